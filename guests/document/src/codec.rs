//! The lib0 encoding y-websocket speaks: variable-length unsigned integers (7 bits per
//! byte, low bits first), length-prefixed byte arrays and UTF-8 strings.

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads lib0 values from a byte slice, never past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// lib0 numbers are JavaScript numbers: at most 53 bits are meaningful.
const MAX_SAFE: u64 = (1 << 53) - 1;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn var_uint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError("truncated integer".into()));
            };
            self.pos += 1;
            if shift >= 56 {
                return Err(DecodeError("integer too long".into()));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if value > MAX_SAFE {
            return Err(DecodeError("integer above 2^53".into()));
        }
        Ok(value)
    }

    pub fn var_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.var_uint()?;
        if len > self.remaining() as u64 {
            return Err(DecodeError(format!(
                "byte array of {len} bytes but only {} remain",
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    pub fn var_string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.var_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError("string is not UTF-8".into()))
    }
}

/// Appends lib0 values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn var_uint(&mut self, mut value: u64) -> &mut Writer {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }

    pub fn var_bytes(&mut self, bytes: &[u8]) -> &mut Writer {
        self.var_uint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn var_string(&mut self, s: &str) -> &mut Writer {
        self.var_bytes(s.as_bytes())
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_uint_round_trips() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            MAX_SAFE,
        ] {
            let bytes = Writer::new().var_uint(v).finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.var_uint().unwrap(), v);
            assert!(r.is_empty());
        }
        assert_eq!(Writer::new().var_uint(300).finish(), vec![0xac, 0x02]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Reader::new(&[0x80]).var_uint().is_err());
        assert!(Reader::new(&[0xff; 12]).var_uint().is_err());
        assert!(Reader::new(&[5, 1, 2]).var_bytes().is_err());
        assert!(Reader::new(&[2, 0xff, 0xfe]).var_string().is_err());
        let huge = Writer::new().var_uint(u32::MAX as u64).finish();
        assert!(Reader::new(&huge).var_bytes().is_err());
    }
}
