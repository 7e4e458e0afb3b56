//! Reading what the server sends, in bounded time and memory (ADR 0028):
//! NDJSON lines found in linear time (each byte is scanned once, a line is
//! cut off the buffer without copying), each line at most `max_line` bytes,
//! each within a deadline that a slow drip of bytes does not extend; single
//! answers and error bodies read up to a limit, never whole.

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::error::EsdbError;

/// The lines of a streaming answer.
pub(crate) type Lines = Pin<Box<dyn Stream<Item = Result<Bytes, EsdbError>> + Send>>;

/// The size limits of what the server sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The longest NDJSON line.
    pub(crate) max_line: usize,
    /// The longest single (non-streaming) answer.
    pub(crate) max_answer: usize,
}

/// A line longer than the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Splits bytes into non-blank lines, in linear time.
#[derive(Debug)]
pub(crate) struct Splitter {
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no newline.
    scanned: usize,
    max_line: usize,
}

impl Splitter {
    pub(crate) fn new(max_line: usize) -> Self {
        Self { buffer: BytesMut::new(), scanned: 0, max_line }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete non-blank line (without its `\n`), `None` if no
    /// complete line is buffered; [`TooLong`] as soon as a line, complete
    /// or not, exceeds the limit.
    pub(crate) fn next_line(&mut self) -> Result<Option<Bytes>, TooLong> {
        loop {
            let Some(offset) = memchr::memchr(b'\n', &self.buffer[self.scanned..]) else {
                self.scanned = self.buffer.len();
                return if self.buffer.len() > self.max_line { Err(TooLong) } else { Ok(None) };
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if end > self.max_line {
                return Err(TooLong);
            }
            let mut line = self.buffer.split_to(end + 1);
            line.truncate(end);
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(line.freeze()));
            }
        }
    }

    /// What is left once the body ended: a last line without `\n`, if it
    /// is not blank.
    pub(crate) fn finish(&mut self) -> Result<Option<Bytes>, TooLong> {
        if let Some(line) = self.next_line()? {
            return Ok(Some(line));
        }
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        Ok((!rest.iter().all(u8::is_ascii_whitespace)).then(|| rest.freeze()))
    }
}

/// Splits a response body into lines. Each line must be complete within
/// `line_timeout` from when the reader starts waiting for it and be at most
/// `max_line` bytes; otherwise the stream ends with [`EsdbError::Timeout`]
/// or [`EsdbError::TooLarge`] (and the connection is dropped).
pub(crate) fn lines(url: String, response: reqwest::Response, line_timeout: Duration, max_line: usize) -> Lines {
    struct State {
        url: String,
        body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
        splitter: Splitter,
        done: bool,
        line_timeout: Duration,
        deadline: Option<Instant>,
    }
    let state = State {
        url,
        body: Box::pin(response.bytes_stream()),
        splitter: Splitter::new(max_line),
        done: false,
        line_timeout,
        deadline: None,
    };
    futures_util::stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        loop {
            let next = if state.done { state.splitter.finish() } else { state.splitter.next_line() };
            match next {
                Ok(Some(line)) => {
                    state.deadline = None;
                    return Some((Ok(line), Some(state)));
                }
                Ok(None) if state.done => return None,
                Ok(None) => {}
                Err(TooLong) => {
                    let error = EsdbError::TooLarge { url: state.url, what: "line", limit: max_line };
                    return Some((Err(error), None));
                }
            }
            let deadline = *state.deadline.get_or_insert_with(|| Instant::now() + state.line_timeout);
            match tokio::time::timeout_at(deadline, state.body.next()).await {
                Ok(Some(Ok(chunk))) => state.splitter.push(&chunk),
                Ok(Some(Err(error))) => return Some((Err(EsdbError::connection(&state.url, &error)), None)),
                Ok(None) => state.done = true,
                Err(_) => {
                    let error = EsdbError::Timeout { url: state.url, timeout: state.line_timeout };
                    return Some((Err(error), None));
                }
            }
        }
    })
    .boxed()
}

/// The body of `response`: `Ok(Ok(all of it))` if it has at most `limit`
/// bytes, `Ok(Err(its first limit bytes))` if it has more (the rest is not
/// read: a `Content-Length` above the limit is not read at all).
pub(crate) async fn bounded_body(
    mut response: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Result<Bytes, Bytes>> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Ok(Err(Bytes::new()));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Err(body.freeze()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(splitter: &mut Splitter) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = splitter.next_line().unwrap() {
            out.push(String::from_utf8(line.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn lines_split_across_chunks_and_blank_lines_are_skipped() {
        let mut splitter = Splitter::new(100);
        splitter.push(b"{\"a\":1}\n\n  \n{\"b\"");
        assert_eq!(all(&mut splitter), ["{\"a\":1}"]);
        splitter.push(b":2}\n{\"c\":3}");
        assert_eq!(all(&mut splitter), ["{\"b\":2}"]);
        assert_eq!(splitter.finish().unwrap().as_deref(), Some(&b"{\"c\":3}"[..]));
        assert_eq!(splitter.finish().unwrap(), None);
    }

    #[test]
    fn a_line_over_the_limit_is_refused_before_it_ends() {
        let mut splitter = Splitter::new(8);
        splitter.push(b"12345678\n");
        assert_eq!(all(&mut splitter), ["12345678"]);
        splitter.push(b"123456789");
        assert_eq!(splitter.next_line(), Err(TooLong), "refused without waiting for its end");
        let mut splitter = Splitter::new(8);
        splitter.push(b"123456789\nok\n");
        assert_eq!(splitter.next_line(), Err(TooLong));
    }

    #[test]
    fn many_small_chunks_of_one_long_line_take_linear_time() {
        // 4 MiB in 64-byte chunks: a rescan of the buffer per chunk would
        // be 65,536 scans of up to 4 MiB.
        let mut splitter = Splitter::new(8 << 20);
        let chunk = [b'x'; 64];
        let started = std::time::Instant::now();
        for _ in 0..(4 << 20) / 64 {
            splitter.push(&chunk);
            assert_eq!(splitter.next_line(), Ok(None));
        }
        splitter.push(b"\n");
        assert_eq!(splitter.next_line().unwrap().map(|l| l.len()), Some(4 << 20));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
