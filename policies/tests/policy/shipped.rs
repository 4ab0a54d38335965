//! The shipped policies validate and every shipped fixture passes.

use gatehouse_policy::{test_fixtures, validate, Catalog, Expected};

use super::common::shipped_dir;

#[test]
fn shipped_policies_validate_without_warnings() {
    let report = validate(shipped_dir()).expect("shipped policies validate");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!(
        report.files,
        [
            "consent.cedar",
            "erasure.cedar",
            "fields.cedar",
            "groups-cluster.cedar",
            "residency.cedar",
            "team-access.cedar"
        ]
    );
    assert!(report.policies.len() >= 20, "{:?}", report.policies);
    assert_eq!(report.catalog_entries, Some(5));
    assert!(report.to_string().starts_with("valid: "), "{report}");
}

#[test]
fn every_shipped_fixture_passes() {
    let report = test_fixtures(shipped_dir()).expect("fixtures run");
    assert!(report.all_passed(), "{report}");
    let allow = report
        .results
        .iter()
        .filter(|r| r.expected == Expected::Allow)
        .count();
    let deny = report.results.len() - allow;
    assert!(allow >= 20 && deny >= 20, "{allow} ALLOW, {deny} DENY");
}

#[test]
fn demo_catalog_is_the_shipped_file() {
    let shipped = Catalog::load(&shipped_dir().join("catalog.toml")).expect("catalog");
    let demo = Catalog::demo().expect("demo catalog");
    assert_eq!(shipped.len(), demo.len());
    for topic in [
        "social.posts",
        "social.profiles",
        "support.tickets",
        "consent.events",
        "social.new",
    ] {
        assert_eq!(
            shipped.lookup(topic).entry(),
            demo.lookup(topic).entry(),
            "{topic}"
        );
    }
}

#[test]
fn default_policy_files_are_the_shipped_directory() {
    // `gatehouse demo` writes DEFAULT_POLICY_FILES out; a policy file added
    // to default/ but not to that list would silently be missing there.
    let mut on_disk: Vec<String> = std::fs::read_dir(shipped_dir())
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = gatehouse_policy::DEFAULT_POLICY_FILES
        .iter()
        .map(|(name, text)| {
            let path = shipped_dir().join(name);
            assert_eq!(
                std::fs::read_to_string(&path).expect("read"),
                *text,
                "{name}"
            );
            (*name).to_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, on_disk);
}
