//! Record headers: kept in their encoded form until a caller asks for
//! them as a `Vec`.

use super::encode::{bytes_field_len, put_bytes_field, put_varint, varint_len};
use super::*;

/// One record header, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key (a UTF-8 string by convention; not checked).
    pub key: Bytes,
    /// The value; `None` is null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// One record header, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value; `None` is null.
    pub value: Option<&'a [u8]>,
}

impl HeaderRef<'_> {
    /// The key as a string, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key).ok()
    }
}

/// A record's headers. Decoded headers stay in their wire form (validated,
/// so reading them cannot fail) until [`Headers::to_mut`] turns them into a
/// vector; untouched headers are written back byte for byte.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// Headers as decoded: their count and their encoding (without the
    /// count). While this is set, `owned` is empty.
    pub(super) encoded: Option<(usize, Bytes)>,
    pub(super) owned: Vec<Header>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        match &self.encoded {
            Some((count, _)) => *count,
            None => self.owned.len(),
        }
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The headers in order.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            inner: match &self.encoded {
                Some((count, entries)) => IterRepr::Encoded {
                    entries,
                    pos: 0,
                    left: *count,
                },
                None => IterRepr::Owned(self.owned.iter()),
            },
        }
    }

    /// The last header with this key (Kafka's `Headers.lastHeader`).
    pub fn last(&self, key: &[u8]) -> Option<HeaderRef<'_>> {
        self.iter().filter(|h| h.key == key).last()
    }

    /// The headers as a vector, to change them. The first call on decoded
    /// headers builds the vector (slices of the same buffer, no copies).
    pub fn to_mut(&mut self) -> &mut Vec<Header> {
        if let Some((count, entries)) = self.encoded.take() {
            self.owned.reserve_exact(count);
            let mut pos = 0;
            for _ in 0..count {
                let Some((key, value)) = next_header(&entries, &mut pos) else {
                    break;
                };
                self.owned.push(Header {
                    key: entries.slice(key),
                    value: value.map(|v| entries.slice(v)),
                });
            }
        }
        &mut self.owned
    }

    /// Appends a header.
    pub fn push(&mut self, key: impl Into<Bytes>, value: Option<Bytes>) {
        self.to_mut().push(Header::new(key, value));
    }

    /// Bytes the header section takes on the wire, count included, or
    /// `None` if something is too long for its length prefix.
    pub(super) fn encoded_len(&self) -> Option<usize> {
        if let Some((count, entries)) = &self.encoded {
            return Some(varint_len(i32::try_from(*count).ok()?) + entries.len());
        }
        let mut n = varint_len(i32::try_from(self.owned.len()).ok()?);
        for h in &self.owned {
            n += bytes_field_len(Some(&h.key))? + bytes_field_len(h.value.as_deref())?;
        }
        Some(n)
    }

    /// Writes the header section; lengths were checked by `encoded_len`.
    pub(super) fn write(&self, out: &mut BytesMut) {
        if let Some((count, entries)) = &self.encoded {
            put_varint(out, *count as i32);
            out.put_slice(entries);
            return;
        }
        put_varint(out, self.owned.len() as i32);
        for h in &self.owned {
            put_bytes_field(out, Some(&h.key));
            put_bytes_field(out, h.value.as_deref());
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        if let (Some((a, x)), Some((b, y))) = (&self.encoded, &other.encoded) {
            if a == b && bytes_eq(x, y) {
                return true;
            }
        }
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl From<Vec<Header>> for Headers {
    fn from(owned: Vec<Header>) -> Self {
        Self {
            encoded: None,
            owned,
        }
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = HeaderRef<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    inner: IterRepr<'a>,
}

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Encoded {
        entries: &'a [u8],
        pos: usize,
        left: usize,
    },
    Owned(std::slice::Iter<'a, Header>),
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        match &mut self.inner {
            IterRepr::Encoded { entries, pos, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let entries = *entries;
                // Validated when decoded, so this does not fail.
                let (key, value) = next_header(entries, pos)?;
                Some(HeaderRef {
                    key: entries.get(key)?,
                    value: match value {
                        Some(v) => Some(entries.get(v)?),
                        None => None,
                    },
                })
            }
            IterRepr::Owned(it) => it.next().map(|h| HeaderRef {
                key: &h.key,
                value: h.value.as_deref(),
            }),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            IterRepr::Encoded { left, .. } => (0, Some(*left)),
            IterRepr::Owned(it) => it.size_hint(),
        }
    }
}
