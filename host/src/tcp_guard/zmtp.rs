//! Just enough ZMTP 3 to police what a TCP client sends before it reaches
//! `zeromq`: the greeting, and every frame header's claimed size.
//!
//! `zeromq` 0.7 reserves a frame's claimed length before the bytes arrive,
//! so a 73-byte client claiming 2^50 bytes aborts the process. The guard
//! reads each header as it streams past and cuts the connection the moment
//! a claim exceeds the cap, before forwarding it.

/// Largest ZMTP command accepted (READY with its few properties is far smaller).
pub const MAX_COMMAND: u64 = 4096;

/// Why a connection was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The first 64 bytes are not a ZMTP 3 NULL greeting.
    #[error("not a ZMTP 3.x NULL-mechanism greeting: {0}")]
    Greeting(String),
    /// A frame header uses flag bits that do not exist.
    #[error("frame header with unknown flags {0:#04x}")]
    Flags(u8),
    /// A frame claims more than the cap.
    #[error("a {kind} frame claims {size} bytes, over the cap of {max}")]
    TooLarge {
        /// `message` or `command`.
        kind: &'static str,
        /// Claimed size.
        size: u64,
        /// The cap.
        max: u64,
    },
}

enum State {
    Greeting { got: usize, buf: [u8; 64] },
    Header { got: usize, buf: [u8; 9] },
    Body { left: u64, message: bool },
}

/// Follows one direction of a connection's byte stream.
pub struct Inspector {
    state: State,
    max_frame: u64,
    /// Complete message frames seen (the first one is the plugin's HELLO).
    pub message_frames: u64,
    /// Keep the body of the first message frame, if it is no larger than this.
    capture: usize,
    captured: Vec<u8>,
    /// The first message frame's body, once complete (when captured).
    pub first_message: Option<Vec<u8>>,
}

impl Inspector {
    /// Expects a greeting first; message frames may be up to `max_frame` bytes.
    pub fn new(max_frame: u64) -> Inspector {
        Inspector::capturing(max_frame, 0)
    }

    /// Like [`Inspector::new`], and keeps the body of the first message
    /// frame when it is at most `capture` bytes (the host's WELCOME or
    /// REJECT, read off the host's side of a connection).
    pub fn capturing(max_frame: u64, capture: usize) -> Inspector {
        Inspector {
            state: State::Greeting {
                got: 0,
                buf: [0; 64],
            },
            max_frame,
            message_frames: 0,
            capture,
            captured: Vec::new(),
            first_message: None,
        }
    }

    /// Whether the frame now being read is the first message frame, and small enough to keep.
    fn capturing_now(&self, size: u64) -> bool {
        self.message_frames == 0 && self.first_message.is_none() && size <= self.capture as u64
    }

    /// Checks the next bytes; an error means cut the connection now.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        while !data.is_empty() {
            match &mut self.state {
                State::Greeting { got, buf } => {
                    let n = (64 - *got).min(data.len());
                    buf[*got..*got + n].copy_from_slice(&data[..n]);
                    *got += n;
                    data = &data[n..];
                    if *got == 64 {
                        check_greeting(buf)?;
                        self.state = State::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    } else if *got >= 10 && (buf[0] != 0xff || buf[9] != 0x7f) {
                        // Fail early on garbage, without waiting for 64 bytes.
                        return Err(Violation::Greeting("bad signature".into()));
                    }
                }
                State::Header { got, buf } => {
                    buf[*got] = data[0];
                    *got += 1;
                    data = &data[1..];
                    let flags = buf[0];
                    if flags & !0x07 != 0 {
                        return Err(Violation::Flags(flags));
                    }
                    let need = if flags & 0x02 != 0 { 9 } else { 2 };
                    if *got == need {
                        let size = if need == 9 {
                            u64::from_be_bytes([
                                buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8],
                            ])
                        } else {
                            u64::from(buf[1])
                        };
                        let command = flags & 0x04 != 0;
                        let (kind, max) = if command {
                            ("command", MAX_COMMAND)
                        } else {
                            ("message", self.max_frame)
                        };
                        if size > max {
                            return Err(Violation::TooLarge { kind, size, max });
                        }
                        let message = !command;
                        if message && self.capturing_now(size) {
                            self.captured = Vec::with_capacity(size as usize);
                        }
                        if size == 0 {
                            if message {
                                if self.capturing_now(0) {
                                    self.first_message = Some(Vec::new());
                                }
                                self.message_frames += 1;
                            }
                            self.state = State::Header {
                                got: 0,
                                buf: [0; 9],
                            };
                        } else {
                            self.state = State::Body {
                                left: size,
                                message,
                            };
                        }
                    }
                }
                State::Body { left, message } => {
                    let n = (*left).min(data.len() as u64);
                    let keep = *message
                        && self.message_frames == 0
                        && self.first_message.is_none()
                        && self.captured.capacity() > 0;
                    if keep {
                        self.captured.extend_from_slice(&data[..n as usize]);
                    }
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        if *message {
                            if keep {
                                self.first_message = Some(std::mem::take(&mut self.captured));
                            }
                            self.message_frames += 1;
                        }
                        self.state = State::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_greeting(g: &[u8; 64]) -> Result<(), Violation> {
    if g[0] != 0xff || g[9] != 0x7f {
        return Err(Violation::Greeting("bad signature".into()));
    }
    if g[10] < 3 {
        return Err(Violation::Greeting(format!(
            "ZMTP version {}.{}",
            g[10], g[11]
        )));
    }
    let mechanism = &g[12..32];
    if !mechanism.starts_with(b"NULL") || mechanism[4..].iter().any(|&b| b != 0) {
        return Err(Violation::Greeting("mechanism is not NULL".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting() -> Vec<u8> {
        let mut g = vec![0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3;
        g[12..16].copy_from_slice(b"NULL");
        g
    }

    #[test]
    fn huge_claim_is_cut_at_the_header() {
        let mut i = Inspector::new(1 << 20);
        let mut bytes = greeting();
        bytes.push(0x02);
        bytes.extend_from_slice(&(1u64 << 50).to_be_bytes());
        let err = i.feed(&bytes).expect_err("cut");
        assert!(matches!(err, Violation::TooLarge { size, .. } if size == 1 << 50));
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut bytes = greeting();
        // READY command (short), then a 3-byte message, then a long 300-byte message.
        bytes.extend_from_slice(&[0x04, 2, b'h', b'i']);
        bytes.extend_from_slice(&[0x00, 3, 1, 2, 3]);
        bytes.push(0x02);
        bytes.extend_from_slice(&300u64.to_be_bytes());
        bytes.extend_from_slice(&[7u8; 300]);
        for chunk in [1, 2, 7, 64, 1000] {
            let mut i = Inspector::new(1 << 20);
            for piece in bytes.chunks(chunk) {
                i.feed(piece).expect("valid");
            }
            assert_eq!(i.message_frames, 2, "chunk {chunk}");
        }
    }

    #[test]
    fn the_first_message_is_kept_when_asked_for() {
        let mut bytes = greeting();
        bytes.extend_from_slice(&[0x04, 2, b'h', b'i']);
        bytes.extend_from_slice(&[0x00, 3, 1, 2, 3]);
        bytes.extend_from_slice(&[0x00, 2, 9, 9]);
        for chunk in [1, 3, 1000] {
            let mut i = Inspector::capturing(1 << 20, 16);
            for piece in bytes.chunks(chunk) {
                i.feed(piece).expect("valid");
            }
            assert_eq!(
                i.first_message.as_deref(),
                Some(&[1u8, 2, 3][..]),
                "chunk {chunk}"
            );
        }
        let mut i = Inspector::capturing(1 << 20, 2);
        i.feed(&bytes).expect("valid");
        assert_eq!(i.first_message, None, "too big to keep");
        assert_eq!(i.message_frames, 2);
    }

    #[test]
    fn garbage_and_other_mechanisms_are_refused() {
        let mut i = Inspector::new(1024);
        assert!(i.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
        let mut g = greeting();
        g[12..17].copy_from_slice(b"CURVE");
        assert!(Inspector::new(1024).feed(&g).is_err());
        let mut bytes = greeting();
        bytes.push(0x80);
        assert_eq!(
            Inspector::new(1024).feed(&bytes),
            Err(Violation::Flags(0x80))
        );
    }
}
