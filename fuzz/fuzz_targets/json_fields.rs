//! The proxy's JSON span scanner (`gatehouse_proxy::codec::json`): scan
//! arbitrary bytes for a few fixed paths (members, nested members, array
//! elements, a subject id); when the scan succeeds, read every string
//! found, replace or remove every span with `splice`, and check that the
//! result still scans (as valid JSON of the same shape).
#![no_main]

use gatehouse_proxy::codec::json::{scan, splice, string_at, Edit, Targets, ELEMENTS};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn targets() -> &'static Targets {
    static T: OnceLock<Targets> = OnceLock::new();
    T.get_or_init(|| {
        Targets::new(
            vec![
                vec!["email"],
                vec!["author", "name"],
                vec!["geo", ELEMENTS],
                vec!["items", ELEMENTS, "ip"],
            ],
            Some(vec!["user", "id"]),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(found) = scan(data, targets()) else {
        return;
    };
    for f in &found.fields {
        let _ = string_at(data, &f.value);
    }
    if let Some(s) = &found.subject {
        let _ = string_at(data, s);
    }
    // Replace every value with a string.
    let edits: Vec<Edit<'_>> = found
        .fields
        .iter()
        .map(|f| Edit {
            range: f.value.clone(),
            with: b"\"***\"",
        })
        .collect();
    let mut out = Vec::new();
    splice(data, &edits, &mut out);
    scan(&out, targets()).expect("masked document no longer scans");
    // Remove every member that is an object member (not an array element).
    let edits: Vec<Edit<'_>> = found
        .fields
        .iter()
        .filter(|f| f.member != f.value)
        .map(|f| Edit {
            range: f.member.clone(),
            with: b"",
        })
        .collect();
    let mut out = Vec::new();
    splice(data, &edits, &mut out);
    let _ = scan(&out, targets());
});
