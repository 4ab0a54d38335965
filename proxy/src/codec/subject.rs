//! Finding a record's data subject, as the catalog locates it (record key,
//! a header, or a JSON path), for the governance filters and the erasure
//! workflow's read-back.

use bytes::Bytes;
use gatehouse_policy::SubjectLocator;

use crate::codec::json::{scan, string_at, Targets};
use crate::codec::records::Headers;

/// The subject id of a record, by the catalog's locator; `json_subject`
/// is where [`scan`] found the subject path in `doc`.
pub(crate) fn subject_id(
    locator: Option<&SubjectLocator>,
    key: Option<&Bytes>,
    headers: &Headers,
    doc: &[u8],
    json_subject: Option<&std::ops::Range<usize>>,
) -> Option<String> {
    match locator? {
        SubjectLocator::Key => key
            .and_then(|k| std::str::from_utf8(k).ok())
            .map(str::to_string),
        SubjectLocator::Header(name) => headers
            .last(name.as_bytes())
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string),
        SubjectLocator::Json(_) => json_subject.and_then(|r| string_at(doc, r)),
    }
    .filter(|s| !s.is_empty())
}

/// Finds the subject id of a record; `json` is the compiled subject path
/// for [`SubjectLocator::Json`].
fn subject_of(
    locator: &SubjectLocator,
    json: Option<&Targets>,
    key: Option<&Bytes>,
    value: Option<&Bytes>,
    headers: &Headers,
) -> Option<String> {
    let doc = value.map(|v| v.as_ref()).unwrap_or_default();
    let found = match (locator, json) {
        (SubjectLocator::Json(_), Some(t)) if !doc.is_empty() => scan(doc, t).ok(),
        _ => None,
    };
    subject_id(
        Some(locator),
        key,
        headers,
        doc,
        found.as_ref().and_then(|f| f.subject.as_ref()),
    )
}

/// A catalog subject locator, compiled once for many records.
#[derive(Debug)]
pub(crate) struct SubjectFinder {
    locator: SubjectLocator,
    json: Option<Targets>,
}

impl SubjectFinder {
    pub(crate) fn new(locator: SubjectLocator) -> Self {
        let json = match &locator {
            SubjectLocator::Json(path) => Some(Targets::new(
                Vec::<Vec<&str>>::new(),
                Some(path.steps().collect()),
            )),
            _ => None,
        };
        Self { locator, json }
    }

    /// The subject id of a record, if it names one.
    pub(crate) fn find(
        &self,
        key: Option<&Bytes>,
        value: Option<&Bytes>,
        headers: &Headers,
    ) -> Option<String> {
        subject_of(&self.locator, self.json.as_ref(), key, value, headers)
    }
}
