//! The CLI's end of the control socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Request, Response};

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("no iglu host is running on {} (start one with `iglu run`, or point at it with --config or IGLU_RUNTIME_DIR)", .0.display())]
    NoHost(PathBuf),
    /// The connection failed midway.
    #[error("talking to the host failed: {0}")]
    Io(#[from] std::io::Error),
    /// The host did not answer in time.
    #[error("the host did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not understood.
    #[error("the host's answer is not understood: {0}")]
    BadResponse(String),
}

/// Sends one request and reads the answer, waiting at most `timeout`.
pub async fn request(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NoHost(socket.to_owned()))
        }
        Err(e) => return Err(e.into()),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let line =
            serde_json::to_vec(request).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        let mut line = match super::cookie::read_for(socket) {
            Some(cookie) => super::cookie::add_to(&line, &cookie),
            None => line,
        };
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await?;
        serde_json::from_str::<Response>(&answer)
            .map_err(|e| ClientError::BadResponse(e.to_string()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}
