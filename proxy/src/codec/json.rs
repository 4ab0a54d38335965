//! Finding fields in a JSON document without building it.
//!
//! Field protection edits a handful of members of each record: the
//! protected fields (encrypted on produce, decrypted / masked / removed on
//! fetch) and the data subject's id. Parsing a record into a
//! `serde_json::Value` and serializing it again costs several times the
//! work of the edit itself, so this module scans the document once, checks
//! that it is valid JSON (RFC 8259, UTF-8), and reports the byte spans of
//! the members it was asked about. The caller splices new bytes into those
//! spans ([`splice`]); everything else of the document is copied as it was,
//! byte for byte.
//!
//! Paths are sequences of steps from the root: member names, and
//! [`ELEMENTS`] (`[*]`) for every element of an array (`$.author.email` is
//! `["author", "email"]`, `$.messages[*].body` is
//! `["messages", "[*]", "body"]`). A member name is compared after
//! unescaping, so `"em\u0061il"` is `email`.
//!
//! # The document must have the shape the paths declare
//!
//! A scan that silently skipped what it did not expect would let personal
//! data through in clear (`{"author": [{"email": …}]}` has no member
//! `author.email`). So, on the targets' paths only, the document must have
//! the declared shape, or the scan fails with a [`ScanError::Shape`]:
//!
//! - where a path goes on with a member name, the value must be an object
//!   (or `null`: nothing there);
//! - where it goes on with `[*]`, an array (or `null`);
//! - the root, when there is any target, an object (or `null`).
//!
//! The value a path ends at may be anything (a protected `$.geo` may be an
//! object). Everything off the targets' paths is only checked to be valid
//! JSON.
//!
//! # Repeated member names
//!
//! RFC 8259 lets an object repeat a name and leaves the meaning to the
//! reader: JavaScript and Python take the last, others the first, some
//! refuse. Two readers of one record could then disagree on its subject or
//! on a consent. Gatehouse follows I-JSON (RFC 7493) on the paths it
//! governs: a name repeated in one object on a target path is refused
//! ([`ScanError::Duplicate`]); elsewhere it is left alone. The consent store
//! applies the same rule to consent records.

use std::ops::Range;

/// Deepest nesting accepted (objects and arrays); deeper documents are
/// refused rather than risking the stack.
pub const MAX_DEPTH: usize = 128;

/// The path step that stands for every element of an array, as the
/// catalog's [`gatehouse_policy::JsonPath::steps`] yields it.
pub use gatehouse_policy::ELEMENTS;

/// Why a document is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {what}")]
pub struct JsonError {
    /// Byte offset of the problem.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Why a document cannot be scanned for its targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not valid JSON.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Valid JSON whose shape is not what the paths declare.
    #[error("{path} is {found}, where {expected} is declared")]
    Shape {
        /// The path whose value has the wrong shape (`$.author`).
        path: Box<str>,
        /// What is there (`an array`, `a string`, ...).
        found: &'static str,
        /// What the paths need there.
        expected: &'static str,
    },
    /// A member name on a target path repeated in one object.
    #[error("{path} appears more than once in one object")]
    Duplicate {
        /// The repeated member's path.
        path: Box<str>,
    },
}

/// The paths to look for, compiled into a trie once per topic.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Node {
    /// Member steps: (name, node).
    children: Vec<(Box<str>, usize)>,
    /// The `[*]` step: every element of an array here.
    elements: Option<usize>,
    /// The field index reported for a member ending here.
    field: Option<usize>,
    /// Whether the subject id ends here.
    subject: bool,
    /// The path to here, for messages (`$.author`).
    path: Box<str>,
}

impl Node {
    fn new(path: Box<str>) -> Self {
        Self {
            children: Vec::new(),
            elements: None,
            field: None,
            subject: false,
            path,
        }
    }
}

impl Targets {
    /// Targets for `fields` (paths, reported by their index) and an optional
    /// subject path. A step [`ELEMENTS`] stands for every element of an
    /// array.
    pub fn new<'a>(
        fields: impl IntoIterator<Item = Vec<&'a str>>,
        subject: Option<Vec<&'a str>>,
    ) -> Self {
        let mut t = Targets {
            nodes: vec![Node::new("$".into())],
        };
        for (i, path) in fields.into_iter().enumerate() {
            let n = t.insert(&path);
            t.nodes[n].field = Some(i);
        }
        if let Some(path) = subject {
            let n = t.insert(&path);
            t.nodes[n].subject = true;
        }
        t
    }

    fn insert(&mut self, path: &[&str]) -> usize {
        let mut at = 0;
        for step in path {
            let found = if *step == ELEMENTS {
                self.nodes[at].elements
            } else {
                self.nodes[at]
                    .children
                    .iter()
                    .find(|(name, _)| &**name == *step)
                    .map(|(_, n)| *n)
            };
            at = match found {
                Some(n) => n,
                None => {
                    let parent = &self.nodes[at].path;
                    let path = if *step == ELEMENTS {
                        format!("{parent}{step}")
                    } else {
                        format!("{parent}.{step}")
                    };
                    self.nodes.push(Node::new(path.into()));
                    let n = self.nodes.len() - 1;
                    if *step == ELEMENTS {
                        self.nodes[at].elements = Some(n);
                    } else {
                        self.nodes[at].children.push(((*step).into(), n));
                    }
                    n
                }
            };
        }
        at
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// One protected member found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpan {
    /// The index of its path in [`Targets::new`]'s `fields`.
    pub field: usize,
    /// The member's value.
    pub value: Range<usize>,
    /// What to cut to remove the member with one of its commas, so that
    /// the rest stays valid JSON (see [`splice`] for adjacent removals).
    pub member: Range<usize>,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The protected members, in document order.
    pub fields: Vec<FieldSpan>,
    /// The subject id's value (the last occurrence, if repeated).
    pub subject: Option<Range<usize>>,
}

/// Checks that `doc` is one valid JSON value with the shape `targets`
/// declare (see the module docs), and finds the members of `targets` in it.
pub fn scan(doc: &[u8], targets: &Targets) -> Result<Found, ScanError> {
    if let Err(e) = std::str::from_utf8(doc) {
        return Err(JsonError {
            at: e.valid_up_to(),
            what: "not UTF-8",
        }
        .into());
    }
    let mut s = Scanner {
        doc,
        at: 0,
        targets,
        found: Found::default(),
    };
    s.ws();
    let root = (!targets.is_empty()).then_some(0);
    s.value(root, 0)?;
    s.ws();
    if s.at != doc.len() {
        return Err(s.error("text after the value").into());
    }
    Ok(s.found)
}

/// The string value at `range` of `doc` (as [`scan`] reported it),
/// unescaped; `None` if the value there is not a string.
pub fn string_at(doc: &[u8], range: &Range<usize>) -> Option<String> {
    let raw = doc.get(range.clone())?;
    if raw.len() >= 2 && raw[0] == b'"' && !raw.contains(&b'\\') {
        return std::str::from_utf8(&raw[1..raw.len() - 1])
            .ok()
            .map(str::to_string);
    }
    serde_json::from_slice::<String>(raw).ok()
}

/// One change to a document: `range` is replaced by `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit<'a> {
    /// What to replace.
    pub range: Range<usize>,
    /// The new bytes (empty to remove).
    pub with: &'a [u8],
}

/// Applies `edits` (in document order, as [`scan`] reports spans) to `doc`,
/// appending the result to `out`. An edit that starts inside the previous
/// one starts where that one ended: two adjacent removed members may both
/// claim the comma between them, and it must go only once (the second then
/// takes the comma after it, if there is one).
pub fn splice(doc: &[u8], edits: &[Edit<'_>], out: &mut Vec<u8>) {
    let mut last = 0;
    for e in edits {
        let start = e.range.start.max(last);
        let mut end = e.range.end.max(start);
        if e.range.start < last && e.with.is_empty() {
            // A removed member whose leading comma went with the removed
            // member before it: take the comma after it instead, if any,
            // or `{"a":1,"b":2,"c":3}` without a and b would keep `{,"c":3}`.
            let rest = &doc[end..];
            let ws = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            if rest.get(ws) == Some(&b',') {
                end += ws + 1;
            }
        }
        out.extend_from_slice(&doc[last..start]);
        out.extend_from_slice(e.with);
        last = end;
    }
    out.extend_from_slice(&doc[last..]);
}

/// Bytes at the start of `rest` that a string may hold as they are: up to
/// the first quote, backslash or control character. Checks 16 bytes at a
/// time without branching inside a block, which the compiler turns into
/// vector compares; most of a document is string content.
fn plain_len(rest: &[u8]) -> usize {
    const BLOCK: usize = 16;
    let special = |b: u8| u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b < 0x20);
    let mut at = 0;
    for block in rest.chunks_exact(BLOCK) {
        if block.iter().fold(0u8, |acc, &b| acc | special(b)) != 0 {
            break;
        }
        at += BLOCK;
    }
    at + rest[at..]
        .iter()
        .position(|&b| special(b) != 0)
        .unwrap_or(rest.len() - at)
}

struct Scanner<'d, 't> {
    doc: &'d [u8],
    at: usize,
    targets: &'t Targets,
    found: Found,
}

impl Scanner<'_, '_> {
    fn error(&self, what: &'static str) -> JsonError {
        JsonError { at: self.at, what }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, ScanError> {
        Err(self.error(what).into())
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value; `node` is the trie node of its path (None: not on any
    /// target path).
    fn value(&mut self, node: Option<usize>, depth: usize) -> Result<(), ScanError> {
        let Some(n) = node else {
            return self.any(depth);
        };
        let wants_object = !self.targets.nodes[n].children.is_empty();
        let elements = self.targets.nodes[n].elements;
        if !wants_object && elements.is_none() {
            // A path ends here: the value may be anything.
            return self.any(depth);
        }
        match (self.peek(), elements) {
            (Some(b'{'), _) if wants_object => self.object(Some(n), depth + 1),
            (Some(b'['), Some(e)) => self.array(Some(e), depth + 1),
            (Some(b'n'), _) => self.literal(b"null"),
            (next, _) => {
                let found = match next {
                    Some(b'{') => "an object",
                    Some(b'[') => "an array",
                    Some(b'"') => "a string",
                    Some(b't' | b'f') => "a boolean",
                    _ => "a number",
                };
                // A document that is not JSON at all is a JSON error first.
                self.any(depth)?;
                Err(ScanError::Shape {
                    path: self.targets.nodes[n].path.clone(),
                    found,
                    expected: if wants_object {
                        "an object"
                    } else {
                        "an array"
                    },
                })
            }
        }
    }

    /// Any value, off the target paths.
    fn any(&mut self, depth: usize) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'{') => self.object(None, depth + 1),
            Some(b'[') => self.array(None, depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail("unexpected character"),
            None => self.fail("unexpected end"),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.doc[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.fail("invalid literal")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return self.fail("invalid number");
            }
        }
        Ok(())
    }

    /// A string; returns whether it contained escapes.
    fn string(&mut self) -> Result<bool, ScanError> {
        self.at += 1; // the opening quote
        let mut escaped = false;
        loop {
            // Plain bytes are the common case: skip them in one go.
            self.at += plain_len(&self.doc[self.at..]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            self.at += 1;
                            let hex = self.doc.get(self.at..self.at + 4);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.fail("invalid \\u escape");
                            }
                            self.at += 4;
                        }
                        _ => return self.fail("invalid escape"),
                    }
                }
                Some(_) => return self.fail("control character in a string"),
                None => return self.fail("unterminated string"),
            }
        }
    }

    /// An array; `elements` is the trie node of its elements' path.
    fn array(&mut self, elements: Option<usize>, depth: usize) -> Result<(), ScanError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.at += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value(elements, depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected , or ]"),
            }
        }
    }

    /// The position among `node`'s children of the member `name`, and its
    /// node.
    fn child(&self, node: usize, name: &[u8], escaped: bool) -> Option<(usize, usize)> {
        let children = &self.targets.nodes[node].children;
        if children.is_empty() {
            return None;
        }
        if !escaped {
            return children
                .iter()
                .position(|(n, _)| n.as_bytes() == name)
                .map(|i| (i, children[i].1));
        }
        let mut quoted = Vec::with_capacity(name.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(name);
        quoted.push(b'"');
        let name: String = serde_json::from_slice(&quoted).ok()?;
        children
            .iter()
            .position(|(n, _)| **n == *name)
            .map(|i| (i, children[i].1))
    }

    fn object(&mut self, node: Option<usize>, depth: usize) -> Result<(), ScanError> {
        if depth > MAX_DEPTH {
            return self.fail("nested too deeply");
        }
        self.at += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        let mut prev_comma: Option<usize> = None;
        // Which of the node's children were met (I-JSON: each at most once);
        // a bit per child, more children than bits are tracked in `more`.
        let mut seen = 0u64;
        let mut more: Vec<usize> = Vec::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.fail("expected a member name");
            }
            let member_start = self.at;
            let escaped = self.string()?;
            let name = &self.doc[member_start + 1..self.at - 1];
            let matched = node.and_then(|n| self.child(n, name, escaped));
            if let Some((i, c)) = matched {
                let again = match u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i)) {
                    Some(bit) => {
                        let before = seen;
                        seen |= bit;
                        before & bit != 0
                    }
                    None if more.contains(&i) => true,
                    None => {
                        more.push(i);
                        false
                    }
                };
                if again {
                    return Err(ScanError::Duplicate {
                        path: self.targets.nodes[c].path.clone(),
                    });
                }
            }
            let child = matched.map(|(_, c)| c);
            self.ws();
            if self.peek() != Some(b':') {
                return self.fail("expected :");
            }
            self.at += 1;
            self.ws();
            let value_start = self.at;
            self.value(child, depth)?;
            let value_end = self.at;
            self.ws();
            let next = self.peek();
            if let Some(c) = child {
                let n = &self.targets.nodes[c];
                if n.subject {
                    self.found.subject = Some(value_start..value_end);
                }
                if let Some(field) = n.field {
                    let member = match (prev_comma, next) {
                        (Some(comma), _) => comma..value_end,
                        (None, Some(b',')) => member_start..self.at + 1,
                        (None, _) => member_start..value_end,
                    };
                    self.found.fields.push(FieldSpan {
                        field,
                        value: value_start..value_end,
                        member,
                    });
                }
            }
            match next {
                Some(b',') => {
                    prev_comma = Some(self.at);
                    self.at += 1;
                }
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected , or }"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn targets() -> Targets {
        Targets::new(
            vec![vec!["author", "email"], vec!["author", "name"], vec!["geo"]],
            Some(vec!["author", "id"]),
        )
    }

    const POST: &str = r#"{"id":"p-1","author":{"id":"u-42","email":"jane@example.com","name":"Jane Doe","handle":"@jd"},"geo":{"lat":48.85,"lon":2.35},"text":"hi"}"#;

    #[test]
    fn plain_runs_end_at_the_first_special_byte_in_any_block() {
        for len in 0..50 {
            for stop in [b'"', b'\\', b'\n', 0x1f] {
                for at in 0..=len {
                    let mut rest = vec![b'a'; len];
                    if at < len {
                        rest[at] = stop;
                    }
                    assert_eq!(plain_len(&rest), at, "len {len}, {stop:#x} at {at}");
                }
            }
        }
        assert_eq!(plain_len("é€😀\"".as_bytes()), 9);
    }

    #[test]
    fn finds_fields_and_subject() {
        let doc = POST.as_bytes();
        let f = scan(doc, &targets()).unwrap();
        let got: Vec<(usize, &str)> = f
            .fields
            .iter()
            .map(|s| (s.field, std::str::from_utf8(&doc[s.value.clone()]).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, r#""jane@example.com""#),
                (1, r#""Jane Doe""#),
                (2, r#"{"lat":48.85,"lon":2.35}"#)
            ]
        );
        assert_eq!(string_at(doc, f.subject.as_ref().unwrap()).unwrap(), "u-42");
    }

    #[test]
    fn removing_members_keeps_json_valid() {
        let doc = POST.as_bytes();
        let f = scan(doc, &targets()).unwrap();
        let edits: Vec<Edit<'_>> = f
            .fields
            .iter()
            .map(|s| Edit {
                range: s.member.clone(),
                with: b"",
            })
            .collect();
        let mut out = Vec::new();
        splice(doc, &edits, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"p-1","author":{"id":"u-42","handle":"@jd"},"text":"hi"})
        );
    }

    #[test]
    fn removing_adjacent_leading_members_keeps_json_valid() {
        for (doc, want) in [
            (
                r#"{"author":{"email":null,"name":null,"o":1}}"#,
                r#"{"author":{"o":1}}"#,
            ),
            (
                r#"{"author":{ "email" : 1 , "name" : 2 , "o" : 3 }}"#,
                r#"{"author":{"o":3}}"#,
            ),
            (r#"{"author":{"email":1,"name":2}}"#, r#"{"author":{}}"#),
            (
                r#"{"geo":1,"author":{"name":2,"email":3},"x":4}"#,
                r#"{"author":{},"x":4}"#,
            ),
        ] {
            let f = scan(doc.as_bytes(), &targets()).unwrap();
            let edits: Vec<Edit<'_>> = f
                .fields
                .iter()
                .map(|s| Edit {
                    range: s.member.clone(),
                    with: b"",
                })
                .collect();
            let mut out = Vec::new();
            splice(doc.as_bytes(), &edits, &mut out);
            let got: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{doc} -> {}: {e}", String::from_utf8_lossy(&out)));
            let want: serde_json::Value = serde_json::from_str(want).unwrap();
            assert_eq!(got, want, "{doc}");
        }
    }

    #[test]
    fn escaped_names_match_and_bad_json_is_refused() {
        let doc = br#"{"author":{"em\u0061il":"x@y.z"}}"#;
        let f = scan(doc, &targets()).unwrap();
        assert_eq!(f.fields.len(), 1);
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,2",
            b"{\"a\":01}",
            b"{\"a\":\"\x01\"}",
            b"\"\\x\"",
            b"{} x",
            b"\xff",
            b"",
            b"nul",
            b"1.",
            b"-",
        ] {
            assert!(
                scan(bad, &targets()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(scan(deep.as_bytes(), &targets()).is_err());
    }

    #[test]
    fn a_protected_path_crossing_an_array_or_a_string_is_refused() {
        for (doc, path, found) in [
            (
                r#"{"author":[{"id":"u-1","email":"a@x"}]}"#,
                "$.author",
                "an array",
            ),
            (r#"{"author":"u-1 a@x"}"#, "$.author", "a string"),
            (r#"{"author":7}"#, "$.author", "a number"),
            (r#"{"author":true}"#, "$.author", "a boolean"),
            (r#"[{"author":{"email":"a@x"}}]"#, "$", "an array"),
            (r#""a@x""#, "$", "a string"),
        ] {
            match scan(doc.as_bytes(), &targets()) {
                Err(ScanError::Shape {
                    path: p, found: f, ..
                }) => assert_eq!((&*p, f), (path, found), "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
        // Broken JSON is a JSON error even where the shape is wrong too.
        assert!(matches!(
            scan(br#"{"author":[1,}"#, &targets()),
            Err(ScanError::Json(_))
        ));
        // null holds nothing; shapes off the paths are free; a value a path
        // ends at may be anything.
        for doc in [
            r#"{"author":null,"geo":null}"#,
            r#"{"tags":[1,"a",{"author":[]}],"text":"x"}"#,
            r#"{"author":{"email":["a@x","b@y"]},"geo":[1,2]}"#,
        ] {
            scan(doc.as_bytes(), &targets()).unwrap();
        }
        let f = scan(br#"{"author":{"email":["a@x","b@y"]}}"#, &targets()).unwrap();
        assert_eq!(f.fields.len(), 1);
    }

    #[test]
    fn declared_array_paths_find_every_element() {
        let t = Targets::new(
            vec![
                vec!["messages", ELEMENTS, "body"],
                vec!["authors", ELEMENTS, "email"],
            ],
            Some(vec!["customer", "id"]),
        );
        let doc = br#"{"customer":{"id":"u-1"},"messages":[{"body":"one","at":1},{"at":2},{"body":"three"}],"authors":[]}"#;
        let f = scan(doc, &t).unwrap();
        let got: Vec<(usize, &str)> = f
            .fields
            .iter()
            .map(|s| (s.field, std::str::from_utf8(&doc[s.value.clone()]).unwrap()))
            .collect();
        assert_eq!(got, vec![(0, r#""one""#), (0, r#""three""#)]);
        let edits: Vec<Edit<'_>> = f
            .fields
            .iter()
            .map(|s| Edit {
                range: s.member.clone(),
                with: b"",
            })
            .collect();
        let mut out = Vec::new();
        splice(doc, &edits, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"customer":{"id":"u-1"},"messages":[{"at":1},{"at":2},{}],"authors":[]})
        );
        // An object where the array is declared, an array of strings where
        // objects are.
        for (doc, path) in [
            (r#"{"messages":{"body":"x"}}"#, "$.messages"),
            (r#"{"messages":["x"]}"#, "$.messages[*]"),
        ] {
            match scan(doc.as_bytes(), &t) {
                Err(ScanError::Shape { path: p, .. }) => assert_eq!(&*p, path),
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_repeated_name_on_a_target_path_is_refused_elsewhere_not() {
        for (doc, path) in [
            (r#"{"author":{"id":"u-1","id":"u-2"}}"#, "$.author.id"),
            (
                r#"{"author":{"email":"a","em\u0061il":"b"}}"#,
                "$.author.email",
            ),
            (r#"{"author":{},"author":{"email":"a"}}"#, "$.author"),
            (r#"{"geo":1,"x":2,"geo":3}"#, "$.geo"),
        ] {
            match scan(doc.as_bytes(), &targets()) {
                Err(ScanError::Duplicate { path: p }) => assert_eq!(&*p, path, "{doc}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
        scan(
            br#"{"x":1,"x":2,"author":{"handle":1,"handle":2}}"#,
            &targets(),
        )
        .unwrap();
        // Past 64 children of one node, repeats are still found.
        let many: Vec<String> = (0..70).map(|i| format!("f{i}")).collect();
        let t = Targets::new(many.iter().map(|n| vec![n.as_str()]), None);
        assert!(scan(br#"{"f69":1,"f3":2,"f69":3}"#, &t).is_err());
        assert!(scan(br#"{"f69":1,"f3":2,"f68":3}"#, &t).is_ok());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e9f64..1e9).prop_map(|n| serde_json::json!(n)),
            ".{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("author".to_string()),
                        Just("email".to_string()),
                        Just("geo".to_string()),
                        Just("name".to_string()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Agrees with serde_json on validity, and on what the paths hold;
        /// removing every found member leaves valid JSON without them.
        #[test]
        fn agrees_with_serde_json(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_vec_pretty(&v).unwrap() } else { serde_json::to_vec(&v).unwrap() };
            // Compare with what serde_json reads back (floats may not
            // round-trip exactly through its printer).
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
            // The targets need an object (or null) at the root and at
            // `author`.
            let shaped = v.is_null() || (v.is_object()
                && v.get("author").is_none_or(|a| a.is_object() || a.is_null()));
            let f = match scan(&text, &targets()) {
                Ok(f) => f,
                Err(ScanError::Shape { .. }) if !shaped => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("{e} for {v}"))),
            };
            prop_assert!(shaped, "{} passed as shaped", v);
            for s in &f.fields {
                let here: serde_json::Value = serde_json::from_slice(&text[s.value.clone()]).unwrap();
                let path: &[&str] = match s.field { 0 => &["author", "email"], 1 => &["author", "name"], _ => &["geo"] };
                let mut want = &v;
                for p in path { want = &want[*p]; }
                prop_assert_eq!(&here, want);
            }
            let edits: Vec<Edit<'_>> = f.fields.iter().map(|s| Edit { range: s.member.clone(), with: b"" }).collect();
            let mut out = Vec::new();
            splice(&text, &edits, &mut out);
            let mut expected = v.clone();
            if let Some(a) = expected.get_mut("author").and_then(|a| a.as_object_mut()) {
                a.remove("email");
                a.remove("name");
            }
            if let Some(o) = expected.as_object_mut() { o.remove("geo"); }
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            // Valid JSON exactly when serde_json says so (with no target,
            // no shape is asked for).
            let ours = scan(&bytes, &Targets::default()).is_ok();
            let theirs = serde_json::from_slice::<serde_json::Value>(&bytes).is_ok();
            prop_assert_eq!(ours, theirs);
            // With targets, a JSON error only where serde_json finds one.
            if let Err(ScanError::Json(_)) = scan(&bytes, &targets()) {
                prop_assert!(!theirs);
            }
        }
    }
}
