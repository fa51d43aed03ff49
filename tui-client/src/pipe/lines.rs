//! Reading stdin a line at a time without holding more than a line can be:
//! a line longer than the server takes is counted and skipped, not read
//! into memory whole (a 1 GB line costs nothing).

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLine {
    /// The line, without its line break.
    Text(String),
    /// Longer than the cap: its length in bytes.
    TooLong(usize),
    /// Not UTF-8.
    NotUtf8,
}

/// Lines of `reader`, each held only up to a cap.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    line: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
        }
    }

    /// The next line, holding at most `cap` bytes of it; `None` at the end.
    /// Cancel-safe: what was read stays for the next call.
    ///
    /// # Errors
    ///
    /// When reading fails.
    pub async fn next(&mut self, cap: usize) -> std::io::Result<Option<InputLine>> {
        let mut total = self.line.len();
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                if total == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.finish(total, cap)));
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (&buf[..at], at + 1),
                None => (buf, buf.len()),
            };
            let room = (cap + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            total += chunk.len();
            let ended = done > chunk.len();
            self.reader.consume(done);
            if ended {
                return Ok(Some(self.finish(total, cap)));
            }
        }
    }

    fn finish(&mut self, total: usize, cap: usize) -> InputLine {
        let mut line = std::mem::take(&mut self.line);
        let mut total = total;
        if line.last() == Some(&b'\r') && total == line.len() {
            line.pop();
            total -= 1;
        }
        if total > cap {
            return InputLine::TooLong(total);
        }
        match String::from_utf8(line) {
            Ok(text) => InputLine::Text(text),
            Err(_) => InputLine::NotUtf8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], cap: usize) -> Vec<InputLine> {
        // A tiny buffer, so that lines span many reads.
        let reader = tokio::io::BufReader::with_capacity(4, input);
        let mut lines = BoundedLines::new(reader);
        let mut out = Vec::new();
        while let Some(line) = lines.next(cap).await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_bounds_and_checks_lines() {
        let text = |s: &str| InputLine::Text(s.to_owned());
        assert_eq!(
            all(b"one\r\ntwo\n\nlast", 10).await,
            [text("one"), text("two"), text(""), text("last")]
        );
        assert_eq!(
            all(b"short\nabcdefghijklmnop\nok\n", 10).await,
            [text("short"), InputLine::TooLong(16), text("ok")]
        );
        assert_eq!(all(b"exactly10!\n", 10).await, [text("exactly10!")]);
        assert_eq!(
            all(b"a\xffb\nok", 10).await,
            [InputLine::NotUtf8, text("ok")]
        );
        assert_eq!(all(b"", 10).await, []);
    }
}
