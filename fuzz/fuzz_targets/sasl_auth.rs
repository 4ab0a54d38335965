//! Client SASL messages as the proxy and the broker read them: PLAIN
//! (`parse_plain`, `verify_plain`), a SCRAM exchange (`ScramServer::step`
//! for the client-first and client-final messages, split at the first
//! 0xff byte) against a store with one user, and OAUTHBEARER's client
//! initial response (`ClientInitialResponse::parse`) whose token goes to
//! `jsonwebtoken::decode_header`.
#![no_main]

use gatehouse_proxy::auth::oauth::ClientInitialResponse;
use gatehouse_sasl::{
    parse_plain, verify_plain, CredentialStore, Mechanism, ScramServer, Step, User,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn store() -> &'static CredentialStore {
    static S: OnceLock<CredentialStore> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = CredentialStore::new();
        s.insert(User::new_with_password("alice", "secret", 4096, Default::default()).unwrap())
            .unwrap();
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let _ = parse_plain(data);
            let _ = verify_plain(store(), data);
        }
        1 => {
            let mech = if sel & 4 == 0 {
                Mechanism::ScramSha256
            } else {
                Mechanism::ScramSha512
            };
            let (first, last) = match data.iter().position(|&b| b == 0xff) {
                Some(i) => (&data[..i], &data[i + 1..]),
                None => (data, &[][..]),
            };
            let mut server = ScramServer::new(mech, store()).unwrap();
            if let Ok(Step::Continue { .. }) = server.step(first) {
                let _ = server.step(last);
            }
        }
        _ => {
            if let Ok(r) = ClientInitialResponse::parse(data) {
                let _ = jsonwebtoken::decode_header(r.token());
            }
            if let Ok(s) = std::str::from_utf8(data) {
                let _ = jsonwebtoken::decode_header(s);
            }
        }
    }
});
