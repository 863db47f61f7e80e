//! The token fingerprint: how the token service's change feed names a
//! changed token without sending it (docs/token-service.md#the-change-feed),
//! and how the filter finds that token's cache slots from the fingerprint
//! alone (docs/configuration.md#the-profile-cache).

use crate::TokenKind;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64 bits) over the kind's introspection hint, a NUL byte, and
/// the token's bytes. Not a secret-keeping hash: it hides the token from a
/// log or a feed reader, it does not make guessing it harder.
pub fn token_hash(kind: TokenKind, token: &[u8]) -> u64 {
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
    let h = kind.hint().as_bytes().iter().fold(FNV_OFFSET, step);
    token.iter().fold(step(h, &0), step)
}

/// The fingerprint as the feed writes it: 16 lower-case hex digits.
pub fn token_hash_hex(kind: TokenKind, token: &[u8]) -> String {
    format!("{:016x}", token_hash(kind, token))
}

/// Parses [`token_hash_hex`]'s output.
pub fn parse_token_hash(hex: &str) -> Option<u64> {
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_kind_specific() {
        // A fixed value (checked with an independent FNV-1a): the token service
        // and the filter must agree forever.
        assert_eq!(
            token_hash_hex(TokenKind::AccessToken, b"abc"),
            "8b3bc9e4a0fa9185"
        );
        assert_ne!(
            token_hash(TokenKind::AccessToken, b"abc"),
            token_hash(TokenKind::RefreshToken, b"abc")
        );
        let h = token_hash_hex(TokenKind::ClientId, b"app");
        assert_eq!(
            parse_token_hash(&h),
            Some(token_hash(TokenKind::ClientId, b"app"))
        );
        assert_eq!(parse_token_hash("xyz"), None);
        assert_eq!(parse_token_hash("0123456789abcdeg"), None);
    }
}
