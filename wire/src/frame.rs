//! Length-prefixed framing: `[i32 size][size bytes]`.

use bytes::{Buf, Bytes, BytesMut};

/// Why a byte stream could not be split into frames.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix claims more bytes than the configured maximum.
    #[error("frame of {claimed} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// The size the peer claimed.
        claimed: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The length prefix is negative.
    #[error("negative frame length {0}")]
    Negative(i32),
}

/// Splits frames off the front of a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameSplitter {
    max_frame_bytes: usize,
}

impl FrameSplitter {
    /// A splitter that refuses frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// The configured maximum frame size.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Checks whether `buf` starts with a complete frame.
    ///
    /// Returns the frame's body length when the whole frame is present,
    /// `None` when more bytes are needed. The claimed length is validated as
    /// soon as the 4-byte prefix is present, so an oversized frame is refused
    /// without waiting for (or reserving room for) its body.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let claimed = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if claimed < 0 {
            return Err(FrameError::Negative(claimed));
        }
        let len = claimed as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::Oversized {
                claimed: len as u64,
                max: self.max_frame_bytes,
            });
        }
        if buf.len() - 4 < len {
            return Ok(None);
        }
        Ok(Some(len))
    }

    /// Splits one complete frame body off the front of `buf`, if present.
    pub fn split(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.check(buf)? {
            None => Ok(None),
            Some(len) => {
                buf.advance(4);
                Ok(Some(buf.split_to(len).freeze()))
            }
        }
    }

    /// Like [`FrameSplitter::split`], but the returned frame keeps its
    /// 4-byte length prefix, ready to be forwarded as it is.
    pub fn split_with_prefix(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.check(buf)? {
            None => Ok(None),
            Some(len) => Ok(Some(buf.split_to(len + 4).freeze())),
        }
    }

    /// How many more bytes are needed before the next frame is complete
    /// (at least 1 when the buffer holds no complete frame). Used to size
    /// reads without over-allocating.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        match buf.get(..4) {
            None => 4 - buf.len(),
            Some(p) => {
                let len = i32::from_be_bytes([p[0], p[1], p[2], p[3]]).max(0) as usize;
                (len.min(self.max_frame_bytes) + 4)
                    .saturating_sub(buf.len())
                    .max(1)
            }
        }
    }
}

/// Prepends a 4-byte length to `body`'s bytes, writing into `out`.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) {
    out.reserve(4 + body.len());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_prefix_is_refused_before_the_body_arrives() {
        let s = FrameSplitter::new(1024);
        let buf = (i32::MAX).to_be_bytes();
        assert_eq!(
            s.check(&buf),
            Err(FrameError::Oversized {
                claimed: i32::MAX as u64,
                max: 1024
            })
        );
    }

    #[test]
    fn negative_prefix_is_refused() {
        let s = FrameSplitter::new(1024);
        assert_eq!(
            s.check(&(-5i32).to_be_bytes()),
            Err(FrameError::Negative(-5))
        );
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let s = FrameSplitter::new(1024);
        let mut buf = BytesMut::new();
        write_frame(&mut buf, b"hello");
        for cut in 0..buf.len() {
            assert_eq!(s.check(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(s.check(&buf), Ok(Some(5)));
    }

    proptest! {
        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let s = FrameSplitter::new(300);
            let mut buf = BytesMut::new();
            for b in &bodies {
                write_frame(&mut buf, b);
            }
            let mut out = Vec::new();
            while let Some(f) = s.split(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(f.to_vec());
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, bodies);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = FrameSplitter::new(16);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = s.split(&mut buf) {}
            let _ = s.wanted(&buf);
        }
    }
}
