//! The topic catalog: what Gatehouse knows about each topic's data.
//!
//! ```toml
//! [[topic]]
//! name = "social.posts"            # an exact name, or a pattern with `*`
//! classification = "personal"
//! residency = "eu"
//! owner = "platform"               # optional, default ""
//! format = "json"                  # "json" (default) | "raw"
//! subject = "json:$.author.id"     # "key" | "json:$.path" | "header:NAME"; optional
//! fields = [
//!   { path = "$.author.email", category = "email" },
//! ]
//! erasure = "suppress"             # "suppress" (default) | "tombstone" (needs subject = "key")
//! after_erasure = "refuse"         # "refuse" (default) | "accept"
//! ```
//!
//! Lookup takes an exact name first, then the patterns in file order; the
//! first pattern that matches wins. A topic that matches nothing is
//! *ungoverned*: classification `public`, residency `global`, no subject and
//! no protected fields. It is still a topic for the policies: whether it may
//! be produced to or consumed is decided like for any other.
//!
//! A JSON path here is the small subset the field splicer understands:
//! `$` followed by one or more `.name` steps, where a name may be followed
//! by `[*]` for every element of an array (`$.messages[*].body`). A path
//! cannot end at `[*]` (protect the whole array by its name instead), and a
//! subject path cannot cross an array (a record has one subject). Records
//! must have the shape their topic's paths declare: the proxy refuses a
//! record where a path meets an array it does not declare, or a string
//! where it goes on into an object.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::error::PolicyError;

/// The demo world's catalog, as shipped in `policies/default/catalog.toml`.
const DEMO_CATALOG: &str = include_str!("../default/catalog.toml");

/// Each catalog value gets a distinct generation, so a plan computed against
/// one catalog is never served for another (see `PolicySet::plan`).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The topic catalog. Cheap to clone is not a goal: build it once per
/// configuration and share it.
#[derive(Debug, Clone)]
pub struct Catalog {
    exact: HashMap<String, TopicEntry>,
    patterns: Vec<TopicEntry>,
    generation: u64,
}

/// How the records of a topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// JSON documents; protected fields are JSON paths.
    Json,
    /// Opaque bytes; no protected field can be found in them.
    Raw,
}

/// Where a record's data subject (the person it is about) is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectLocator {
    /// The record key is the subject id.
    Key,
    /// A string at this path of the JSON value.
    Json(JsonPath),
    /// The value of this record header.
    Header(String),
}

/// The path step for every element of an array.
pub const ELEMENTS: &str = "[*]";

/// A JSON path of the form `$.a.b.c` (with `[*]` after a name for the
/// elements of an array: `$.messages[*].body`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath(String);

/// A protected field of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProtectedField {
    /// Where the field is.
    pub path: JsonPath,
    /// Its category (`email`, `phone`, `name`, `handle`, `ip`, `location`,
    /// `free_text`, ...), which policies decide on.
    pub category: String,
}

/// One catalog entry (an exact topic name or a pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEntry {
    /// The name or pattern as written.
    pub name: String,
    /// Data classification, e.g. `personal`.
    pub classification: String,
    /// Residency region, e.g. `eu`, or `global`.
    pub residency: String,
    /// The owning team (informational; available to policies).
    pub owner: String,
    /// How records are encoded.
    pub format: RecordFormat,
    /// Where the data subject is found; `None`: records have no known subject.
    pub subject: Option<SubjectLocator>,
    /// The protected fields.
    pub fields: Vec<ProtectedField>,
    /// What erasing a data subject does to this topic's records.
    pub erasure: Erasure,
    /// Whether records of an erased subject are accepted again.
    pub after_erasure: AfterErasure,
}

/// What erasing a data subject does to a topic's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Erasure {
    /// The subject's records are withheld from every consumer from the
    /// erasure on (offsets kept), until retention removes them; their
    /// protected fields are unreadable anyway once the keys are destroyed.
    #[default]
    Suppress,
    /// Also a tombstone (the subject id as key, a null value) on every
    /// partition, so that compaction removes the subject's records. Only
    /// for topics keyed by subject (`subject = "key"`), compacted.
    Tombstone,
}

/// Whether a topic accepts records of an erased subject again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterErasure {
    /// Refused (`POLICY_VIOLATION`): an erased subject stays erased.
    #[default]
    Refuse,
    /// Accepted under a new data key (a returning customer); the records
    /// from before the erasure stay withheld.
    Accept,
}

/// What the catalog says about one topic: its entry, or ungoverned.
#[derive(Debug, Clone, Copy)]
pub struct TopicInfo<'a> {
    entry: Option<&'a TopicEntry>,
}

// === impl Catalog ===

impl Catalog {
    /// A catalog with no entry: every topic is ungoverned.
    pub fn empty() -> Self {
        Self::from_entries(Vec::new())
    }

    /// The demo world's catalog (`policies/default/catalog.toml`).
    pub fn demo() -> Result<Self, PolicyError> {
        Self::from_toml_str(DEMO_CATALOG, "default/catalog.toml")
    }

    /// Reads a catalog file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses a catalog; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, PolicyError> {
        let err = |message: String| PolicyError::Catalog {
            file: file.to_owned(),
            message,
        };
        let raw: RawCatalog = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut entries = Vec::with_capacity(raw.topic.len());
        for (i, topic) in raw.topic.into_iter().enumerate() {
            let label = if topic.name.is_empty() {
                format!("topic #{}", i + 1)
            } else {
                format!("topic {:?}", topic.name)
            };
            entries.push(
                topic
                    .into_entry()
                    .map_err(|m| err(format!("{label}: {m}")))?,
            );
        }
        Self::build(entries).map_err(err)
    }

    /// Builds a catalog from entries (in lookup order for patterns).
    pub fn from_entries(entries: Vec<TopicEntry>) -> Self {
        // Duplicates: the later exact entry replaces the earlier one; the
        // TOML path refuses them instead (see `build`).
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for entry in entries {
            if entry.name.contains('*') {
                patterns.push(entry);
            } else {
                exact.insert(entry.name.clone(), entry);
            }
        }
        Catalog {
            exact,
            patterns,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn build(entries: Vec<TopicEntry>) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for entry in &entries {
            if !seen.insert(entry.name.as_str()) {
                return Err(format!("topic {:?} is listed twice", entry.name));
            }
        }
        Ok(Self::from_entries(entries))
    }

    /// Every entry: the exact names (sorted), then the patterns in lookup
    /// order.
    pub fn entries(&self) -> Vec<&TopicEntry> {
        let mut exact: Vec<&TopicEntry> = self.exact.values().collect();
        exact.sort_by(|a, b| a.name.cmp(&b.name));
        exact.extend(self.patterns.iter());
        exact
    }

    /// What the catalog says about `topic`.
    pub fn lookup(&self, topic: &str) -> TopicInfo<'_> {
        let entry = self.exact.get(topic).or_else(|| {
            self.patterns
                .iter()
                .find(|entry| glob_match(&entry.name, topic))
        });
        TopicInfo { entry }
    }

    /// The number of entries (exact names and patterns).
    pub fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    /// Whether the catalog has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Identifies this catalog value; plans remember it.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

// === impl TopicInfo ===

impl<'a> TopicInfo<'a> {
    /// The catalog entry, `None` for an ungoverned topic.
    pub fn entry(&self) -> Option<&'a TopicEntry> {
        self.entry
    }

    /// Whether the topic is in the catalog.
    pub fn governed(&self) -> bool {
        self.entry.is_some()
    }

    /// The classification (`public` when ungoverned).
    pub fn classification(&self) -> &'a str {
        self.entry.map_or("public", |e| e.classification.as_str())
    }

    /// The residency (`global` when ungoverned).
    pub fn residency(&self) -> &'a str {
        self.entry.map_or("global", |e| e.residency.as_str())
    }

    /// The owning team (`""` when ungoverned).
    pub fn owner(&self) -> &'a str {
        self.entry.map_or("", |e| e.owner.as_str())
    }

    /// The record format (`raw` when ungoverned: nothing is parsed).
    pub fn format(&self) -> RecordFormat {
        self.entry.map_or(RecordFormat::Raw, |e| e.format)
    }

    /// Where the data subject is found.
    pub fn subject(&self) -> Option<&'a SubjectLocator> {
        self.entry.and_then(|e| e.subject.as_ref())
    }

    /// The protected fields (none when ungoverned).
    pub fn fields(&self) -> &'a [ProtectedField] {
        self.entry.map_or(&[], |e| e.fields.as_slice())
    }
}

// === impl JsonPath ===

impl JsonPath {
    /// Parses `$.a.b`: `$` and one or more non-empty `.name` steps, each
    /// name optionally followed by `[*]` (every element of an array), the
    /// last step excepted.
    pub fn parse(path: &str) -> Result<Self, String> {
        let rest = path
            .strip_prefix("$.")
            .ok_or_else(|| format!("JSON path {path:?} must start with \"$.\""))?;
        for step in rest.split('.') {
            let mut name = step;
            while let Some(n) = name.strip_suffix(ELEMENTS) {
                name = n;
            }
            if name.is_empty() {
                return Err(format!("JSON path {path:?} has an empty step"));
            }
            if name.contains(['[', ']', '*', '$', '"', '\'']) {
                return Err(format!(
                    "JSON path {path:?}: only $.name.name steps, with [*] after a name, are supported"
                ));
            }
        }
        if path.ends_with(ELEMENTS) {
            return Err(format!(
                "JSON path {path:?} ends at array elements: protect the whole array by its name, or a member of its elements"
            ));
        }
        Ok(JsonPath(path.to_owned()))
    }

    /// Whether the path crosses an array (has a `[*]` step).
    pub fn crosses_array(&self) -> bool {
        self.0.contains(ELEMENTS)
    }

    /// Whether `self` is `other` or lies inside it.
    fn within(&self, other: &JsonPath) -> bool {
        let (a, b) = (self.0.as_str(), other.0.as_str());
        a == b || (a.starts_with(b) && matches!(a.as_bytes().get(b.len()), Some(b'.' | b'[')))
    }

    /// The path as written (`$.author.email`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The steps from the root: member names, and [`ELEMENTS`] for `[*]`
    /// (`$.messages[*].body` is `messages`, `[*]`, `body`).
    pub fn steps(&self) -> impl Iterator<Item = &str> + '_ {
        self.0[2..].split('.').flat_map(|step| {
            let name = step.trim_end_matches(ELEMENTS);
            let arrays = (step.len() - name.len()) / ELEMENTS.len();
            std::iter::once(name).chain(std::iter::repeat_n(ELEMENTS, arrays))
        })
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl SubjectLocator ===

impl SubjectLocator {
    /// Parses `key`, `json:$.path` or `header:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "key" {
            Ok(SubjectLocator::Key)
        } else if let Some(path) = text.strip_prefix("json:") {
            let path = JsonPath::parse(path)?;
            if path.crosses_array() {
                return Err(format!(
                    "subject {text:?}: a subject path cannot cross an array (a record has one subject)"
                ));
            }
            Ok(SubjectLocator::Json(path))
        } else if let Some(name) = text.strip_prefix("header:") {
            if name.is_empty() {
                Err("subject \"header:\" needs a header name".to_owned())
            } else {
                Ok(SubjectLocator::Header(name.to_owned()))
            }
        } else {
            Err(format!(
                "subject {text:?}: expected \"key\", \"json:$.path\" or \"header:NAME\""
            ))
        }
    }
}

// === TOML form ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    topic: Vec<RawTopic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    classification: String,
    residency: String,
    #[serde(default)]
    owner: String,
    #[serde(default = "default_format")]
    format: RecordFormat,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    erasure: Erasure,
    #[serde(default)]
    after_erasure: AfterErasure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    path: String,
    category: String,
}

fn default_format() -> RecordFormat {
    RecordFormat::Json
}

impl RawTopic {
    fn into_entry(self) -> Result<TopicEntry, String> {
        let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*');
        if self.name.is_empty() || !self.name.chars().all(valid_name) {
            return Err("name must be a topic name, or a pattern with `*`".to_owned());
        }
        if self.classification.is_empty() {
            return Err("classification must not be empty".to_owned());
        }
        if self.residency.is_empty() {
            return Err("residency must not be empty".to_owned());
        }
        let subject = self
            .subject
            .as_deref()
            .map(SubjectLocator::parse)
            .transpose()?;
        if self.format == RecordFormat::Raw {
            if !self.fields.is_empty() {
                return Err("a raw topic cannot have protected fields".to_owned());
            }
            if let Some(SubjectLocator::Json(_)) = subject {
                return Err("a raw topic cannot locate its subject by JSON path".to_owned());
            }
        }
        let mut fields: Vec<ProtectedField> = Vec::with_capacity(self.fields.len());
        for field in self.fields {
            let path = JsonPath::parse(&field.path)?;
            if field.category.is_empty() {
                return Err(format!("field {path}: category must not be empty"));
            }
            if fields.iter().any(|f| f.path == path) {
                return Err(format!("field {path} is listed twice"));
            }
            if let Some(f) = fields
                .iter()
                .find(|f| f.path.within(&path) || path.within(&f.path))
            {
                return Err(format!(
                    "fields {path} and {} overlap: one lies inside the other",
                    f.path
                ));
            }
            if let Some(SubjectLocator::Json(s)) = &subject {
                if s.within(&path) || path.within(s) {
                    return Err(format!(
                        "field {path} overlaps the subject path {s}: the subject must stay readable"
                    ));
                }
            }
            fields.push(ProtectedField {
                path,
                category: field.category,
            });
        }
        if self.erasure == Erasure::Tombstone && subject != Some(SubjectLocator::Key) {
            return Err(
                "erasure = \"tombstone\" needs subject = \"key\": a tombstone names its subject by key"
                    .to_owned(),
            );
        }
        Ok(TopicEntry {
            name: self.name,
            classification: self.classification,
            residency: self.residency,
            owner: self.owner,
            format: self.format,
            subject,
            fields,
            erasure: self.erasure,
            after_erasure: self.after_erasure,
        })
    }
}

/// `*` matches any run of characters (dots included); everything else
/// matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last `*` swallow one more character.
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("social.*", "social.posts"));
        assert!(glob_match("social.*", "social."));
        assert!(!glob_match("social.*", "social"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c-y-b"));
        assert!(glob_match("*.events", "consent.events"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn demo_catalog() {
        let catalog = Catalog::demo().expect("demo catalog");
        let posts = catalog.lookup("social.posts");
        assert!(posts.governed());
        assert_eq!(posts.residency(), "eu");
        assert_eq!(posts.fields().len(), 5);
        assert_eq!(
            posts.subject(),
            Some(&SubjectLocator::Json(
                JsonPath::parse("$.author.id").expect("path")
            ))
        );
        // Exact before pattern, pattern for the rest of social.*.
        let comments = catalog.lookup("social.comments");
        assert_eq!(comments.entry().map(|e| e.name.as_str()), Some("social.*"));
        assert!(comments.fields().is_empty());
        let sentiment = catalog.lookup("enrich.sentiment");
        assert!(!sentiment.governed());
        assert_eq!(sentiment.residency(), "global");
        assert_eq!(sentiment.classification(), "public");
    }

    #[test]
    fn first_pattern_wins() {
        let catalog = Catalog::from_toml_str(
            r#"
            [[topic]]
            name = "a.*"
            classification = "one"
            residency = "eu"
            [[topic]]
            name = "a.b*"
            classification = "two"
            residency = "eu"
            "#,
            "t",
        )
        .expect("catalog");
        assert_eq!(catalog.lookup("a.bc").classification(), "one");
    }

    #[test]
    fn refuses_bad_entries() {
        let bad = [
            ("name = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\nsubject = \"body\"", "subject"),
            ("name = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\nfields = [{ path = \"email\", category = \"email\" }]", "must start"),
            ("name = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\nformat = \"raw\"\nfields = [{ path = \"$.e\", category = \"email\" }]", "raw"),
            ("name = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\ncolour = \"red\"", "unknown field"),
            ("name = \"x/y\"\nclassification = \"p\"\nresidency = \"eu\"", "topic name"),
        ];
        for (body, needle) in bad {
            let text = format!("[[topic]]\n{body}\n");
            let err = Catalog::from_toml_str(&text, "t")
                .expect_err(body)
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let twice =
            "[[topic]]\nname = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\n".repeat(2);
        let err = Catalog::from_toml_str(&twice, "t")
            .expect_err("twice")
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn json_path_steps() {
        let path = JsonPath::parse("$.author.email").expect("path");
        assert_eq!(path.steps().collect::<Vec<_>>(), ["author", "email"]);
        assert!(JsonPath::parse("$.").is_err());
        assert!(JsonPath::parse("$.a..b").is_err());
        assert!(JsonPath::parse("$.a[0]").is_err());
        let arrays = JsonPath::parse("$.messages[*].body").expect("path");
        assert_eq!(
            arrays.steps().collect::<Vec<_>>(),
            ["messages", "[*]", "body"]
        );
        assert!(arrays.crosses_array());
        let nested = JsonPath::parse("$.grid[*][*].x").expect("path");
        assert_eq!(
            nested.steps().collect::<Vec<_>>(),
            ["grid", "[*]", "[*]", "x"]
        );
        for bad in ["$.a[*]", "$.[*].b", "$.a[*]b.c", "$.a[]", "$.a*.b"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert!(SubjectLocator::parse("json:$.authors[*].id").is_err());
    }

    #[test]
    fn overlapping_paths_are_refused() {
        let topic = |subject: &str, fields: &str| {
            format!("[[topic]]\nname = \"x\"\nclassification = \"p\"\nresidency = \"eu\"\nsubject = \"{subject}\"\nfields = [{fields}]\n")
        };
        for (subject, fields) in [
            (
                "key",
                r#"{ path = "$.geo", category = "location" }, { path = "$.geo.lat", category = "location" }"#,
            ),
            (
                "key",
                r#"{ path = "$.a[*].b", category = "x" }, { path = "$.a", category = "x" }"#,
            ),
            (
                "json:$.author.id",
                r#"{ path = "$.author", category = "x" }"#,
            ),
        ] {
            let err = Catalog::from_toml_str(&topic(subject, fields), "t")
                .expect_err(fields)
                .to_string();
            assert!(err.contains("overlap"), "{err}");
        }
        Catalog::from_toml_str(
            &topic(
                "json:$.author.id",
                r#"{ path = "$.author.email", category = "email" }, { path = "$.authors", category = "x" }"#,
            ),
            "t",
        )
        .expect("siblings with a common prefix do not overlap");
    }
}
