//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Why a policy directory, catalog, identity or fixture was refused.
///
/// Every variant names the file it is about, so an operator reading a log
/// line knows which file to fix. Messages never include record contents or
/// data-subject ids.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The Cedar schema does not parse. The schema is built in, so this is a
    /// defect of the build, not of the policy directory.
    #[error("schema {file}: {message}")]
    Schema {
        /// The schema's name.
        file: String,
        /// Cedar's message.
        message: String,
    },

    /// The policy directory holds a schema file. The schema is built in
    /// (Gatehouse builds the entities itself, so a different schema could not
    /// be honoured); a schema next to the policies is refused rather than
    /// silently ignored.
    #[error(
        "{}: the Cedar schema is built into Gatehouse and cannot be replaced; \
         remove this file (the schema is policies/schema/gatehouse.cedarschema in the source)",
        path.display()
    )]
    SchemaOverride {
        /// The schema file found in the policy directory.
        path: PathBuf,
    },

    /// The policy directory holds no `*.cedar` file. An empty set would deny
    /// everything, which is almost certainly a wrong path.
    #[error("{}: no *.cedar policy file", dir.display())]
    NoPolicies {
        /// The directory.
        dir: PathBuf,
    },

    /// A policy file does not parse.
    #[error("{file}: syntax error: {message}")]
    Syntax {
        /// The policy file's name.
        file: String,
        /// Cedar's messages, one per error, joined by "; ".
        message: String,
    },

    /// A policy has no `@id("...")` annotation. Ids are what the audit trail
    /// records as the policies that decided, so they must be stable and
    /// chosen by the author, not derived from a position in a file.
    #[error("{file}: policy #{index} has no @id(\"...\") annotation")]
    MissingId {
        /// The policy file's name.
        file: String,
        /// The policy's position in the file, from 1.
        index: usize,
    },

    /// Two policies share one `@id`.
    #[error("policy id {id:?} is used twice: in {first} and in {second}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The file of the first use.
        first: String,
        /// The file of the second use.
        second: String,
    },

    /// A policy file holds a template (a policy with `?principal` or
    /// `?resource` slots). Gatehouse links no templates, so one would never
    /// apply.
    #[error("{file}: templates (policies with ?principal / ?resource slots) are not supported")]
    Template {
        /// The policy file's name.
        file: String,
    },

    /// The policies do not validate against the schema (strict mode).
    #[error("the policies do not validate against the schema:{}", Issues(issues))]
    Validation {
        /// Every error the validator found.
        issues: Vec<ValidationIssue>,
    },

    /// The topic catalog is invalid.
    #[error("catalog {file}: {message}")]
    Catalog {
        /// The catalog file's name, as given to the loader.
        file: String,
        /// What is wrong, with the topic entry it is about.
        message: String,
    },

    /// An identity's attributes cannot make a principal (e.g. two teams).
    #[error("principal {name:?}: {reason}")]
    Principal {
        /// The principal's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A fixture file is malformed.
    #[error("fixture {file}: {message}")]
    Fixture {
        /// The fixture file's path, relative to the policy directory.
        file: String,
        /// What is wrong.
        message: String,
    },

    /// The policy directory has no `fixtures/ALLOW` or `fixtures/DENY` file.
    #[error("{}: no fixtures (expected fixtures/ALLOW/*.json and fixtures/DENY/*.json)", dir.display())]
    NoFixtures {
        /// The policy directory.
        dir: PathBuf,
    },
}

/// One error found by the Cedar validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// The policy file's name.
    pub file: String,
    /// The policy's `@id`.
    pub policy: String,
    /// The validator's message.
    pub message: String,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: policy {:?}: {}",
            self.file, self.policy, self.message
        )
    }
}

/// Formats a list of issues, one per line.
struct Issues<'a>(&'a [ValidationIssue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for issue in self.0 {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}
