//! How the floors' frames are written and read: the zeromq floor's
//! MessagePack envelope, and the Unix-socket floor's length-prefixed
//! frames through read and write buffers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

/// The floor's envelope: what any request/reply protocol carries at least.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) id: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
}

/// Read and write buffers of the Unix-socket floor, each side.
pub(crate) const UDS_BUFFER: usize = 256 * 1024;

/// Whether `buffered` holds a whole length-prefixed frame.
pub(crate) fn frame_buffered(buffered: &[u8]) -> bool {
    match buffered.get(..4) {
        Some(len) => {
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            buffered.len() >= 4 + len
        }
        None => false,
    }
}

/// A floor client's sending side.
pub(crate) enum Tx<'a> {
    Zmq(&'a mut iglu_bus::transport::DealerOutbound),
    Uds(BufWriter<tokio::net::unix::WriteHalf<'a>>),
}

/// A floor client's receiving side.
pub(crate) enum Rx<'a> {
    Zmq(&'a mut iglu_bus::transport::DealerInbound),
    Uds(BufReader<tokio::net::unix::ReadHalf<'a>>, Vec<u8>),
}

impl Tx<'_> {
    pub(crate) async fn send(&mut self, id: u64, payload: &[u8]) -> Result<(), String> {
        match self {
            Tx::Zmq(out) => {
                let env = rmp_serde::to_vec_named(&Envelope {
                    id,
                    payload: payload.to_vec(),
                })
                .map_err(|e| e.to_string())?;
                out.send(Bytes::from(env)).await.map_err(|e| e.to_string())
            }
            Tx::Uds(w) => {
                w.write_u32(payload.len() as u32)
                    .await
                    .map_err(|e| e.to_string())?;
                w.write_all(payload).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Sends what is buffered (zeromq sends at once: nothing to do).
    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        match self {
            Tx::Zmq(_) => Ok(()),
            Tx::Uds(w) => w.flush().await.map_err(|e| e.to_string()),
        }
    }
}

impl Rx<'_> {
    pub(crate) async fn recv(&mut self) -> Result<(), String> {
        match self {
            Rx::Zmq(inb) => {
                let (frame, _) = inb.recv().await.map_err(|e| e.to_string())?;
                rmp_serde::from_slice::<Envelope>(&frame).map_err(|e| e.to_string())?;
                Ok(())
            }
            Rx::Uds(r, buf) => {
                let len = r.read_u32().await.map_err(|e| e.to_string())?;
                buf.resize(len as usize, 0);
                r.read_exact(buf).await.map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::frame_buffered;

    #[test]
    fn a_frame_counts_as_buffered_only_when_it_is_whole() {
        assert!(!frame_buffered(&[]));
        assert!(!frame_buffered(&[0, 0, 0]));
        assert!(frame_buffered(&[0, 0, 0, 0]));
        assert!(!frame_buffered(&[0, 0, 0, 2, 9]));
        assert!(frame_buffered(&[0, 0, 0, 2, 9, 9, 0, 0]));
    }
}
