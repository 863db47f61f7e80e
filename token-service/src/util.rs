//! Time, random values and redaction.

use rand::distr::Alphanumeric;
use rand::Rng;
use std::time::{SystemTime, UNIX_EPOCH};

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `n` random ASCII letters and digits from the thread's CSPRNG
/// (`rand::rng()`: ChaCha seeded and reseeded from the OS).
pub fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A random id in the UUID v4 layout (used for app and developer ids).
pub fn random_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A secret shortened for a log line: at most 4 leading characters (fewer
/// for short values, never more than half) followed by `…`.
pub fn redact(secret: &str) -> String {
    let n = (secret.chars().count() / 2).min(4);
    let mut s: String = secret.chars().take(n).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_keeps_at_most_four_chars() {
        assert_eq!(redact("abcdefghijklmnop"), "abcd…");
        assert_eq!(redact("abcdef"), "abc…");
        assert_eq!(redact("ab"), "a…");
        assert_eq!(redact(""), "…");
    }

    #[test]
    fn random_values_have_the_right_shape() {
        let t = random_alnum(32);
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(t, random_alnum(32));
        let id = random_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
    }
}
