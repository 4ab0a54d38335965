//! LocalKeyFile, KeyStore (persistence, cache, shredding, rotation, replication) and Pseudonymizer.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use gatehouse_keys::{
    decrypt_field_into, encrypt_field_into, FieldBinding, KekProvider, KeyError, KeyStore,
    LocalKeyFile, Pseudonymizer, ReplicatedChange,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn mode(path: &Path) -> Result<u32, std::io::Error> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn provider(dir: &Path) -> Result<Arc<LocalKeyFile>, KeyError> {
    Ok(Arc::new(LocalKeyFile::open_or_create(
        &dir.join("kek.json"),
    )?))
}

fn open_store(
    dir: &Path,
    p: Arc<LocalKeyFile>,
    cap: usize,
) -> Result<(sled::Db, KeyStore), Box<dyn std::error::Error>> {
    let db = sled::open(dir)?;
    let store = store_on(&db, p, cap)?;
    Ok((db, store))
}

/// A new store (empty cache, no remembered writers) on an already open sled db.
///
/// Tests that want "a restarted store" use this instead of dropping the
/// `sled::Db` and opening the same path again: sled 0.34 releases its file
/// lock only when its background threads drop their last handle, which can be
/// after `Db` is dropped, so an immediate reopen in the same process may fail
/// with "could not acquire lock … WouldBlock" (spacejam/sled#1234, #1289).
fn store_on(
    db: &sled::Db,
    p: Arc<LocalKeyFile>,
    cap: usize,
) -> Result<KeyStore, Box<dyn std::error::Error>> {
    Ok(KeyStore::open(db.open_tree("keys")?, p, cap)?)
}

/// A field ciphertext and the subject it is bound to.
struct Token {
    subject: String,
    bytes: Vec<u8>,
}

fn binding(subject: &str) -> FieldBinding<'_> {
    FieldBinding {
        topic: "users",
        path: "$.email",
        subject,
    }
}

fn enc(store: &KeyStore, subject: &str, value: &str) -> Result<Token, KeyError> {
    let key = store.key_for_write(subject)?;
    let mut out = Vec::new();
    encrypt_field_into(&key, &binding(subject), value.as_bytes(), &mut out)?;
    Ok(Token {
        subject: subject.to_string(),
        bytes: out,
    })
}

/// Decrypts through the store: find the key named in the token, then decrypt.
fn dec(store: &KeyStore, token: &Token) -> Result<Option<Vec<u8>>, KeyError> {
    let id = gatehouse_keys::ciphertext_key_id(&token.bytes)?;
    let Some(key) = store.key(id)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    decrypt_field_into(&key, &binding(&token.subject), &token.bytes, &mut out)?;
    Ok(Some(out))
}

#[test]
fn local_key_file_created_private_and_refuses_0644() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nested/dir/kek.json");
    let p = LocalKeyFile::open_or_create(&path)?;
    assert_eq!(mode(&path)?, 0o600);
    assert_eq!(p.current_kek_id(), "kek-1");
    let dbg = format!("{p:?}");
    assert!(dbg.contains("redacted") && dbg.contains("kek-1"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    let err = LocalKeyFile::open_or_create(&path)
        .err()
        .ok_or("0644 accepted")?;
    assert!(matches!(err, KeyError::InsecurePermissions { .. }));
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    LocalKeyFile::open_or_create(&path)?;
    Ok(())
}

/// A reader of a stopped proxy's state opens the key file it names, and
/// never makes up a new one when the path is wrong.
#[test]
fn opening_a_missing_key_file_fails_and_creates_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kek.json");
    let err = LocalKeyFile::open(&path)
        .err()
        .ok_or("a missing file opened")?;
    assert!(err.to_string().contains("no such file"), "{err}");
    assert!(!path.exists());
    LocalKeyFile::open_or_create(&path)?;
    assert_eq!(LocalKeyFile::open(&path)?.current_kek_id(), "kek-1");
    Ok(())
}

#[test]
fn local_key_file_rotation_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kek.json");
    let p = LocalKeyFile::open_or_create(&path)?;
    let dek = [42u8; 32];
    let w1 = p.wrap(&dek)?;
    assert_eq!(w1.kek_id, "kek-1");
    let mac = p.mac(b"x")?;
    assert_eq!(p.rotate()?, "kek-2");
    assert_eq!(mode(&path)?, 0o600);
    let w2 = p.wrap(&dek)?;
    assert_eq!(w2.kek_id, "kek-2");
    assert_eq!(p.unwrap(&w1)?.as_slice(), &dek);
    assert_eq!(p.unwrap(&w2)?.as_slice(), &dek);
    assert_eq!(p.mac(b"x")?, mac, "mac secret must not rotate");

    let reopened = LocalKeyFile::open_or_create(&path)?;
    assert_eq!(reopened.current_kek_id(), "kek-2");
    assert_eq!(reopened.unwrap(&w1)?.as_slice(), &dek);
    assert_eq!(reopened.mac(b"x")?, mac);

    // A stale instance sees a rotation made by another one.
    assert_eq!(reopened.rotate()?, "kek-3");
    let w3 = reopened.wrap(&dek)?;
    assert_eq!(p.unwrap(&w3)?.as_slice(), &dek);

    let mut bad = w2.clone();
    bad.kek_id = "kek-99".to_owned();
    let err = p.unwrap(&bad).err().ok_or("unknown kek accepted")?;
    assert!(err.to_string().contains("kek-99"));
    let mut tampered = w2;
    tampered.bytes[15] ^= 1;
    assert!(p.unwrap(&tampered).is_err());
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    Ok(())
}

#[test]
fn key_for_write_stable_and_persistent() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = provider(dir.path())?;
    let db = sled::open(dir.path().join("db"))?;
    let token;
    let id;
    {
        let store = store_on(&db, p.clone(), 16)?;
        let k1 = store.key_for_write("alice")?;
        let k2 = store.key_for_write("alice")?;
        assert_eq!(k1.id(), k2.id());
        assert_ne!(store.key_for_write("bob")?.id(), k1.id());
        id = k1.id();
        token = enc(&store, "alice", r#""alice@example.com""#)?;
        let infos = store.subject_keys("alice")?;
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].id, id);
        assert_eq!(infos[0].subject_tag, store.subject_tag("alice"));
        assert_eq!(infos[0].kek_id, "kek-1");
        assert!(!infos[0].destroyed);
        assert_eq!(store.list()?.len(), 2);
        // The subject id is stored nowhere.
        let listed = format!("{:?}", store.list()?);
        assert!(!listed.contains("alice"));
    }
    // A fresh store: nothing cached, nothing remembered; all it knows is in the tree.
    let store = store_on(&db, p, 16)?;
    assert_eq!(store.cached_keys(), 0);
    assert_eq!(store.key_for_write("alice")?.id(), id);
    assert_eq!(
        dec(&store, &token)?.as_deref(),
        Some(&br#""alice@example.com""#[..])
    );
    for item in db.open_tree("keys")?.iter() {
        let (k, v) = item?;
        assert!(!String::from_utf8_lossy(&k).contains("alice"));
        assert!(!String::from_utf8_lossy(&v).contains("alice"));
    }
    Ok(())
}

#[test]
fn cache_bound_respected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db, store) = open_store(dir.path(), provider(dir.path())?, 2)?;
    let mut tokens = Vec::new();
    for i in 0..20 {
        let subject = format!("user-{i}");
        tokens.push(enc(&store, &subject, &format!("\"v{i}\""))?);
        assert!(store.cached_keys() <= 2);
    }
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(dec(&store, t)?, Some(format!("\"v{i}\"").into_bytes()));
        assert!(store.cached_keys() <= 2);
    }
    for (i, t) in tokens.iter().enumerate().rev() {
        assert_eq!(dec(&store, t)?, Some(format!("\"v{i}\"").into_bytes()));
    }
    assert!(store.cached_keys() <= 2);
    Ok(())
}

#[test]
fn destroy_subject_shreds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db, store) = open_store(dir.path(), provider(dir.path())?, 8)?;
    let token = enc(&store, "alice", r#""alice@example.com""#)?;
    let bob = enc(&store, "bob", r#""bob@example.com""#)?;
    let id = store.key_for_write("alice")?.id();
    // The creation record, as it would be on the key topic.
    let created = store
        .unpublished()?
        .into_iter()
        .find(|(i, _, _)| *i == id)
        .ok_or("creation not queued")?;
    for (i, _, _) in store.unpublished()? {
        store.mark_published(i)?;
    }
    assert!(store.unpublished()?.is_empty());

    assert_eq!(store.destroy_subject("alice")?, vec![id]);
    assert!(store.key(id)?.is_none());
    assert_eq!(dec(&store, &token)?, None);
    assert!(dec(&store, &bob)?.is_some());
    // The destruction is queued for publication, as a destroyed marker.
    let queued = store.unpublished()?;
    assert_eq!(queued.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&queued[0].2)?;
    assert_eq!(v["destroyed"], true);
    assert!(v.get("wrapped").is_none());

    // A late replicated copy of the creation does not resurrect it.
    store.apply_replicated(&created.1, Some(&created.2))?;
    assert!(store.key(id)?.is_none());
    let infos = store.subject_keys("alice")?;
    assert!(infos.len() == 1 && infos[0].destroyed);
    // New data of the subject gets a new key.
    let new_id = store.key_for_write("alice")?.id();
    assert_ne!(new_id, id);
    Ok(())
}

#[test]
fn rotate_kek_rewraps_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = provider(dir.path())?;
    let db = sled::open(dir.path().join("db"))?;
    let mut tokens = Vec::new();
    {
        let store = store_on(&db, p.clone(), 4)?;
        for i in 0..6 {
            tokens.push(enc(&store, &format!("s{i}"), &format!("{i}"))?);
        }
        store.destroy_subject("s0")?;
        let (kek, n) = store.rotate_kek()?;
        assert_eq!(kek, "kek-2");
        assert_eq!(n, 5);
        assert!(store
            .list()?
            .iter()
            .all(|k| k.destroyed || k.kek_id == "kek-2"));
        assert_eq!(store.rotate_kek()?, ("kek-3".to_owned(), 5));
    }
    // A fresh store (empty cache) on the same sled with a provider re-read from
    // the rotated key file.
    let reopened = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.json"))?);
    assert_eq!(reopened.current_kek_id(), "kek-3");
    let store = store_on(&db, reopened, 4)?;
    assert_eq!(store.cached_keys(), 0);
    for (i, t) in tokens.iter().enumerate().skip(1) {
        assert_eq!(dec(&store, t)?, Some(format!("{i}").into_bytes()));
    }
    assert_eq!(dec(&store, &tokens[0])?, None);
    Ok(())
}

#[test]
fn two_replicas_converge() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = provider(dir.path())?;
    let (_db_a, a) = open_store(&dir.path().join("a"), p.clone(), 8)?;
    let (_db_b, b) = open_store(&dir.path().join("b"), p.clone(), 8)?;
    assert_eq!(a.subject_tag("carol"), b.subject_tag("carol"));

    // Both create a key for the same new subject "at once".
    let ta = enc(&a, "carol", r#""from a""#)?;
    let tb = enc(&b, "carol", r#""from b""#)?;
    let (ka, kb) = (
        a.key_for_write("carol")?.id(),
        b.key_for_write("carol")?.id(),
    );
    assert_ne!(ka, kb);

    let from_a = a.unpublished()?;
    let from_b = b.unpublished()?;
    for (id, k, v) in &from_a {
        b.apply_replicated(k, Some(v))?;
        b.apply_replicated(k, Some(v))?; // idempotent
        a.mark_published(*id)?;
    }
    for (id, k, v) in &from_b {
        a.apply_replicated(k, Some(v))?;
        b.mark_published(*id)?;
    }
    assert!(a.unpublished()?.is_empty() && b.unpublished()?.is_empty());

    assert_eq!(dec(&a, &tb)?.as_deref(), Some(&br#""from b""#[..]));
    assert_eq!(dec(&b, &ta)?.as_deref(), Some(&br#""from a""#[..]));
    let chosen = ka.min(kb);
    assert_eq!(a.key_for_write("carol")?.id(), chosen);
    assert_eq!(b.key_for_write("carol")?.id(), chosen);

    // Destruction on a replicates to b, also as a tombstone.
    a.destroy_subject("carol")?;
    for (_, k, v) in a.unpublished()? {
        b.apply_replicated(&k, Some(&v))?;
    }
    assert_eq!(dec(&b, &ta)?, None);
    assert_eq!(dec(&b, &tb)?, None);
    // Tombstone first, then a late creation record: stays destroyed.
    let (_db_c, c) = open_store(&dir.path().join("c"), p, 8)?;
    c.apply_replicated(&from_a[0].1, None)?;
    c.apply_replicated(&from_a[0].1, Some(&from_a[0].2))?;
    assert!(c.key(from_a[0].0)?.is_none());
    Ok(())
}

/// What each replicated record changed, so the proxy can audit destructions
/// it applies; and a destroyed key stays destroyed across a restart, even
/// when its old (authentic) record is replayed after the destruction.
#[test]
fn replicated_changes_are_reported_and_a_replay_never_resurrects() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = provider(dir.path())?;
    let (_db_a, a) = open_store(&dir.path().join("a"), p.clone(), 8)?;
    let t = enc(&a, "erin", r#""secret""#)?;
    let created = a.unpublished()?;
    let (id, k, v) = created.first().cloned().ok_or("nothing queued")?;
    let b_dir = dir.path().join("b");
    {
        let (_db_b, b) = open_store(&b_dir, p.clone(), 8)?;
        assert_eq!(b.apply_replicated(&k, Some(&v))?, ReplicatedChange::Added);
        assert_eq!(
            b.apply_replicated(&k, Some(&v))?,
            ReplicatedChange::Unchanged
        );
        assert_eq!(dec(&b, &t)?.as_deref(), Some(&br#""secret""#[..]));
        a.destroy_subject("erin")?;
        let destroyed = a.unpublished()?;
        let (_, dk, dv) = destroyed.first().cloned().ok_or("nothing queued")?;
        assert_eq!(
            b.apply_replicated(&dk, Some(&dv))?,
            ReplicatedChange::Destroyed
        );
        assert_eq!(
            b.apply_replicated(&dk, Some(&dv))?,
            ReplicatedChange::Unchanged
        );
        assert_eq!(b.apply_replicated(&k, None)?, ReplicatedChange::Unchanged);
        // The old record, written again after the destruction.
        assert_eq!(
            b.apply_replicated(&k, Some(&v))?,
            ReplicatedChange::Unchanged
        );
        assert_eq!(dec(&b, &t)?, None);
    }
    // After a restart too: the destroyed marker is durable.
    let (_db_b, b) = open_store(&b_dir, p, 8)?;
    assert_eq!(
        b.apply_replicated(&k, Some(&v))?,
        ReplicatedChange::Unchanged
    );
    assert!(b.key(id)?.is_none());
    assert_eq!(dec(&b, &t)?, None);
    Ok(())
}

#[test]
fn replicated_record_under_unknown_kek_names_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db_a, a) = open_store(&dir.path().join("a"), provider(&dir.path().join("pa"))?, 8)?;
    let (_db_b, b) = open_store(&dir.path().join("b"), provider(&dir.path().join("pb"))?, 8)?;
    a.key_for_write("dave")?;
    let (_, k, v) = a
        .unpublished()?
        .into_iter()
        .next()
        .ok_or("nothing queued")?;
    let mut rec: serde_json::Value = serde_json::from_slice(&v)?;
    rec["kek_id"] = "kek-77".into();
    let err = b
        .apply_replicated(&k, Some(&serde_json::to_vec(&rec)?))
        .err()
        .ok_or("unknown kek accepted")?;
    assert!(err.to_string().contains("kek-77"), "{err}");
    assert!(b.apply_replicated(b"not-a-key-id", Some(&v)).is_err());
    assert!(b.apply_replicated(&k, Some(b"{")).is_err());
    Ok(())
}

#[test]
fn pseudonyms_deterministic_per_provider_and_category() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p1 = provider(&dir.path().join("one"))?;
    let p2 = provider(&dir.path().join("two"))?;
    let a = Pseudonymizer::new(p1.as_ref())?;
    let b = Pseudonymizer::new(&LocalKeyFile::open_or_create(
        &dir.path().join("one/kek.json"),
    )?)?;
    let c = Pseudonymizer::new(p2.as_ref())?;
    let tok = |ps: &Pseudonymizer, cat: &str, v: &str| {
        let mut out = Vec::new();
        ps.token_into(cat, v.as_bytes(), &mut out);
        String::from_utf8(out)
    };
    let t = tok(&a, "handle", r#""@janedoe""#)?;
    assert_eq!(t, tok(&b, "handle", r#""@janedoe""#)?);
    assert_ne!(t, tok(&c, "handle", r#""@janedoe""#)?);
    assert_ne!(t, tok(&a, "email", r#""@janedoe""#)?);
    assert_ne!(t, tok(&a, "handle", r#""@janedoe2""#)?);
    let s: String = serde_json::from_str(&t)?;
    assert!(s.starts_with("ps_") && s.len() == 23, "{s}");
    assert!(s[3..]
        .bytes()
        .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
    // Stable across KEK rotation.
    p1.rotate()?;
    assert_eq!(
        t,
        tok(&Pseudonymizer::new(p1.as_ref())?, "handle", r#""@janedoe""#)?
    );
    assert!(format!("{a:?}").contains("redacted"));
    Ok(())
}

#[test]
fn concurrent_key_for_write_agrees() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db, store) = open_store(dir.path(), provider(dir.path())?, 4)?;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || s.key_for_write("erin").map(|k| k.id()))
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.join().map_err(|_| "thread panicked")??);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.subject_keys("erin")?.len(), 1);
    Ok(())
}

#[test]
fn destruction_after_hand_out_stays_queued() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db, store) = open_store(dir.path(), provider(dir.path())?, 4)?;
    let id = store.key_for_write("frank")?.id();
    let handed = store.unpublished()?;
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].1, id.to_string().into_bytes());
    // Destroyed while the creation record is being published.
    store.destroy_subject("frank")?;
    store.mark_published(id)?;
    let queued = store.unpublished()?;
    assert_eq!(queued.len(), 1, "the destruction must still be published");
    let v: serde_json::Value = serde_json::from_slice(&queued[0].2)?;
    assert_eq!(v["destroyed"], true);
    store.mark_published(id)?;
    assert!(store.unpublished()?.is_empty());
    Ok(())
}

#[test]
fn debug_output_is_redacted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_db, store) = open_store(dir.path(), provider(dir.path())?, 4)?;
    let key = store.key_for_write("gina")?;
    let dbg = format!("{store:?} {key:?}");
    assert!(!dbg.contains("gina"));
    assert!(dbg.contains("redacted"));
    Ok(())
}
