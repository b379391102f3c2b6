//! A plugin's stdout and stderr, line by line into the host's log and the
//! plugin's ring of recent lines (see `logs`).

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line of plugin output forwarded to the log; the rest of the line is
/// cut so a plugin that never prints a newline cannot grow the host's memory.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Forwards `reader` to the log until it ends.
pub(crate) async fn forward_lines<R: AsyncRead + Unpin>(
    plugin: Arc<str>,
    stream: &'static str,
    reader: R,
    logs: Arc<crate::logs::LogBook>,
) {
    let mut reader = BufReader::with_capacity(MAX_LOG_LINE, reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (chunk, consumed, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if complete {
            emit(&logs, &plugin, stream, &line);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&logs, &plugin, stream, &line);
    }
}

fn emit(logs: &crate::logs::LogBook, plugin: &str, stream: &'static str, line: &[u8]) {
    crate::logs::line(logs, plugin, stream, &String::from_utf8_lossy(line));
}
