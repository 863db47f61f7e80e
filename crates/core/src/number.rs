//! The one decimal writer: numbers written into a buffer on the stack,
//! for variables (`expires_in`...), cache slot keys and the Lua bridge's
//! lengths, with no allocation.

/// Room for a decimal i64 or u64.
#[derive(Debug, Default)]
pub(crate) struct NumberBuf([u8; 20]);

impl NumberBuf {
    /// `n` in decimal.
    #[inline]
    pub(crate) fn format(&mut self, n: i64) -> &[u8] {
        let mut i = self.digits(n.unsigned_abs());
        if n < 0 {
            i -= 1;
            self.0[i] = b'-';
        }
        &self.0[i..]
    }

    /// `n` in decimal.
    #[inline]
    pub(crate) fn format_unsigned(&mut self, n: u64) -> &[u8] {
        let i = self.digits(n);
        &self.0[i..]
    }

    /// Writes the digits of `m` at the end; answers where they start (one
    /// byte is left in front for a sign, unless `m` has 20 digits).
    #[inline(always)]
    fn digits(&mut self, mut m: u64) -> usize {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                return i;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NumberBuf;

    #[test]
    fn writes_every_width() {
        let mut b = NumberBuf::default();
        assert_eq!(b.format(0), b"0");
        assert_eq!(b.format(-42), b"-42");
        assert_eq!(b.format(i64::MIN), i64::MIN.to_string().as_bytes());
        assert_eq!(b.format(i64::MAX), i64::MAX.to_string().as_bytes());
        assert_eq!(b.format_unsigned(u64::MAX), u64::MAX.to_string().as_bytes());
        assert_eq!(b.format_unsigned(7), b"7");
    }
}
