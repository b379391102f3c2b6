//! Several protocol messages in one ZeroMQ message, one per frame.
//!
//! Batching makes one write carry many small messages, but the receiver
//! reads a ZeroMQ message whole before it handles any frame of it: a batch
//! of large frames holds back the first one until the last has arrived,
//! and the two sides stop overlapping their work. So a batch is closed by
//! its byte size as well as by its frame count.

use bytes::Bytes;

/// Most protocol messages batched into one ZeroMQ message (one per frame).
/// The host cuts a connection whose ZeroMQ message would carry more than
/// this many frames at the size cap, so a peer cannot grow one without end.
pub const MAX_FRAMES_PER_MESSAGE: usize = 64;

/// A batch takes no more frames once it holds this many bytes; a frame this
/// large travels alone.
pub const MAX_BATCH_BYTES: usize = 128 * 1024;

/// Frames gathered for one ZeroMQ message.
#[derive(Debug, Default)]
pub struct Batch {
    frames: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    /// Adds a frame; the batch may then be full.
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push(frame);
    }

    /// Whether another frame may join.
    pub fn has_room(&self) -> bool {
        self.frames.len() < MAX_FRAMES_PER_MESSAGE && self.bytes < MAX_BATCH_BYTES
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames, leaving the batch empty.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }
}

/// Cuts `frames`, in order, into batches that each have room for every
/// frame they hold but the last (see [`Batch::has_room`]).
pub fn batches(frames: Vec<Bytes>) -> impl Iterator<Item = Vec<Bytes>> {
    let mut frames = frames.into_iter().peekable();
    std::iter::from_fn(move || {
        frames.peek()?;
        let mut batch = Batch::default();
        while batch.has_room() {
            match frames.next() {
                Some(frame) => batch.push(frame),
                None => break,
            }
        }
        Some(batch.take())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(frames: &[usize]) -> Vec<Vec<usize>> {
        let frames = frames.iter().map(|&n| Bytes::from(vec![0u8; n])).collect();
        batches(frames)
            .map(|b| b.iter().map(Bytes::len).collect())
            .collect()
    }

    #[test]
    fn small_frames_batch_by_count_large_ones_by_bytes() {
        assert!(sizes(&[]).is_empty());
        let small = sizes(&[10; 130]);
        assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [64, 64, 2]);
        let k64 = 64 * 1024;
        assert_eq!(
            sizes(&[k64; 5]),
            [vec![k64, k64], vec![k64, k64], vec![k64]]
        );
        let m1 = 1024 * 1024;
        assert_eq!(sizes(&[10, m1, m1, 10]), [vec![10, m1], vec![m1], vec![10]]);
    }

    #[test]
    fn order_is_kept() {
        let frames: Vec<Bytes> = (0..200u32)
            .map(|i| Bytes::from(i.to_be_bytes().repeat(1 + (i as usize % 7) * 1000)))
            .collect();
        let again: Vec<Bytes> = batches(frames.clone()).flatten().collect();
        assert_eq!(frames, again);
    }
}
