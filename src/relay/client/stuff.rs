//! Dot-stuffing (RFC 5321 4.5.2) as a stream, so a message is sent in bounded chunks
//! however big it is.

/// Dot-stuffs bytes fed in any chunking; [`DotStuffer::finish`] ends the data section.
#[derive(Debug, Clone, Copy)]
pub struct DotStuffer {
    at_line_start: bool,
    /// The last byte fed (to end the data with a CRLF of its own).
    last: Option<u8>,
    second_last: Option<u8>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last: None,
            second_last: None,
        }
    }
}

impl DotStuffer {
    /// Appends `input`, dot-stuffed, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    out.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                    self.at_line_start = false;
                }
            }
        }
        match input {
            [.., a, b] => (self.second_last, self.last) = (Some(*a), Some(*b)),
            [b] => (self.second_last, self.last) = (self.last, Some(*b)),
            [] => {}
        }
    }

    /// Makes sure the content ends with CRLF and appends the end-of-data line `.\r\n`.
    pub fn finish(self, out: &mut Vec<u8>) {
        match (self.second_last, self.last) {
            (_, None) => {}
            (Some(b'\r'), Some(b'\n')) => {}
            (_, Some(b'\r')) => out.push(b'\n'),
            _ => out.extend_from_slice(b"\r\n"),
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Dot-stuffs a whole message, makes sure it ends with CRLF, and appends the end-of-data
/// line `.\r\n`.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 512 + 8);
    let mut s = DotStuffer::default();
    s.push(body, &mut out);
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_chunking_gives_the_same_bytes() {
        let inputs: [&[u8]; 6] = [
            b".a\r\nb\r\n..c\r\n",
            b"x\r\n.\r\ny",
            b"x\r",
            b"\r\n.",
            b"",
            b"abc",
        ];
        for input in inputs {
            let whole = dot_stuff(input);
            for size in 1..=3 {
                let mut s = DotStuffer::default();
                let mut out = Vec::new();
                for chunk in input.chunks(size) {
                    s.push(chunk, &mut out);
                }
                s.finish(&mut out);
                assert_eq!(out, whole, "{input:?} in chunks of {size}");
            }
        }
        assert_eq!(dot_stuff(b"x\r"), b"x\r\n.\r\n");
        assert_eq!(dot_stuff(b"abc"), b"abc\r\n.\r\n");
    }
}
