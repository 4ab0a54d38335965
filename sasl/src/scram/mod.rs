//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka uses them
//! (KIP-84): [`ScramServer`] and [`ScramClient`].
//!
//! ```text
//! client                                      server
//!   client-first   n,,n=user,r=cnonce   ─────▶
//!                                       ◀─────  r=cnonce+snonce,s=salt,i=4096   server-first
//!   client-final   c=biws,r=...,p=proof ─────▶  (checks nonce and proof)
//!                                       ◀─────  v=ServerSignature               server-final
//!   (checks the server signature)
//! ```
//!
//! What Gatehouse supports and refuses:
//! - gs2 flags `n` and `y` (no channel binding); `p=` is refused, and so are
//!   the `-PLUS` mechanisms (not offered).
//! - An authzid (`a=`) only if it equals the user name.
//! - Kafka's `tokenauth=true` extension (delegation tokens) is refused; other
//!   extensions are ignored, a mandatory extension (`m=`) is refused.
//! - User names are UTF-8 with `,` and `=` escaped as `=2C` / `=3D`.
//!   Passwords are not SASLprep-normalised (Kafka does not either).
//! - Any error ends the exchange; the state machines never restart.

mod client;
mod messages;
mod server;

pub use client::ScramClient;
pub use server::{ScramServer, Step};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::credentials::{CredentialStore, ScramCredential, User};
    use crate::crypto::b64_decode;
    use crate::error::SaslError;
    use crate::mechanism::Mechanism;

    const MECHANISMS: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// A store with "ingest" (both mechanisms), "comma,user=x" (both) and
    /// "only256" (SCRAM-SHA-256 only).
    fn store() -> CredentialStore {
        let mut store = CredentialStore::new();
        for (name, password) in [("ingest", "s3cret"), ("comma,user=x", "pässword")] {
            store
                .insert(User::new_with_password(name, password, 4096, BTreeMap::new()).unwrap())
                .unwrap();
        }
        let mut only256 = User::new_with_password("only256", "pw", 4096, BTreeMap::new()).unwrap();
        only256.scram_sha_512 = None;
        store.insert(only256).unwrap();
        store
    }

    fn server_first_text(step: Step<'_>) -> Vec<u8> {
        match step {
            Step::Continue { response } => response,
            Step::Done { .. } => panic!("done too early"),
        }
    }

    /// Runs a complete exchange; returns the authenticated user's name.
    fn exchange(
        store: &CredentialStore,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<String, SaslError> {
        let mut server = ScramServer::new(mechanism, store)?;
        let mut client = ScramClient::new(mechanism, user, password)?;
        let server_first = server_first_text(server.step(&client.first())?);
        let client_final = client.step(&server_first)?;
        match server.step(&client_final)? {
            Step::Done { user, response } => {
                client.finish(&response)?;
                assert!(client.is_done() && server.is_done());
                Ok(user.name.clone())
            }
            Step::Continue { .. } => panic!("not done after client-final"),
        }
    }

    /// RFC 7677 §3. Note the server nonce ends in `)hNlF$k0`: that is the
    /// value the published proof and signature are computed with.
    #[test]
    fn rfc7677_sha256_vector_byte_for_byte() {
        const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        const SERVER_FIRST: &str =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential =
            ScramCredential::derive(Mechanism::ScramSha256, "pencil", Some(&salt), 4096).unwrap();
        let mut store = CredentialStore::new();
        store
            .insert(User {
                name: "user".to_owned(),
                attributes: BTreeMap::new(),
                scram_sha_256: Some(credential),
                scram_sha_512: None,
            })
            .unwrap();

        let mut client = ScramClient::with_fixed_nonce(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )
        .unwrap();
        let mut server = ScramServer::new(Mechanism::ScramSha256, &store)
            .unwrap()
            .with_server_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");

        assert_eq!(client.first(), CLIENT_FIRST.as_bytes());
        let server_first = server_first_text(server.step(CLIENT_FIRST.as_bytes()).unwrap());
        assert_eq!(String::from_utf8(server_first).unwrap(), SERVER_FIRST);
        let client_final = client.step(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), CLIENT_FINAL);
        match server.step(CLIENT_FINAL.as_bytes()).unwrap() {
            Step::Done { user, response } => {
                assert_eq!(user.name, "user");
                assert_eq!(String::from_utf8(response).unwrap(), SERVER_FINAL);
            }
            Step::Continue { .. } => panic!("expected Done"),
        }
        client.finish(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn round_trips_for_both_mechanisms() {
        let store = store();
        for mechanism in MECHANISMS {
            assert_eq!(
                exchange(&store, mechanism, "ingest", "s3cret").unwrap(),
                "ingest"
            );
            assert_eq!(
                exchange(&store, mechanism, "comma,user=x", "pässword").unwrap(),
                "comma,user=x"
            );
        }
        assert_eq!(
            exchange(&store, Mechanism::ScramSha256, "only256", "pw").unwrap(),
            "only256"
        );
    }

    #[test]
    fn wrong_password_fails() {
        let store = store();
        for mechanism in MECHANISMS {
            let err = exchange(&store, mechanism, "ingest", "S3cret").unwrap_err();
            assert!(matches!(err, SaslError::AuthenticationFailed), "{err}");
        }
    }

    #[test]
    fn unknown_user_fails_like_a_wrong_password() {
        let store = store();
        for mechanism in MECHANISMS {
            let wrong = exchange(&store, mechanism, "ingest", "nope").unwrap_err();
            let unknown = exchange(&store, mechanism, "nobody", "nope").unwrap_err();
            assert!(matches!(unknown, SaslError::AuthenticationFailed));
            assert_eq!(wrong.to_string(), unknown.to_string());
        }
        // A user without a credential for the mechanism is an unknown user too.
        let err = exchange(&store, Mechanism::ScramSha512, "only256", "pw").unwrap_err();
        assert!(matches!(err, SaslError::AuthenticationFailed));
    }

    #[test]
    fn claimed_user_name_is_kept_after_a_failure() {
        let store = store();
        for (user, password) in [
            ("ingest", "wrong"),
            ("nobody", "nope"),
            ("comma,user=x", "x"),
        ] {
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
            assert_eq!(server.claimed_username(), None);
            let mut client = ScramClient::new(Mechanism::ScramSha256, user, password).unwrap();
            let server_first = server_first_text(server.step(&client.first()).unwrap());
            let client_final = client.step(&server_first).unwrap();
            assert!(server.step(&client_final).is_err());
            // Unescaped, as the store would look it up.
            assert_eq!(server.claimed_username(), Some(user));
        }
        // A client-first-message that does not parse claims nobody.
        let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
        assert!(server.step(b"n,,r=no-name").is_err());
        assert_eq!(server.claimed_username(), None);
    }

    #[test]
    fn unknown_user_gets_a_plausible_and_stable_server_first() {
        let store = store();
        let server_first = |user: &str| {
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
            let client = ScramClient::new(Mechanism::ScramSha256, user, "x").unwrap();
            let text = String::from_utf8(server_first_text(server.step(&client.first()).unwrap()))
                .unwrap();
            // Drop the nonce; keep salt and iterations.
            text.split_once(",s=").unwrap().1.to_owned()
        };
        let real = server_first("ingest");
        let fake = server_first("nobody");
        assert_eq!(fake, server_first("nobody"), "decoy salt is stable");
        assert_ne!(fake, server_first("somebody-else"));
        let shape = |s: &str| {
            let (salt, iterations) = s.split_once(",i=").unwrap();
            (b64_decode(salt).unwrap().len(), iterations.to_owned())
        };
        assert_eq!(shape(&real), shape(&fake));
    }

    /// Runs client-first / server-first and returns the pieces for tampering.
    fn half_exchange<'s>(
        store: &'s CredentialStore,
        mechanism: Mechanism,
    ) -> (ScramServer<'s>, ScramClient, String) {
        let mut server = ScramServer::new(mechanism, store).unwrap();
        let mut client = ScramClient::new(mechanism, "ingest", "s3cret").unwrap();
        let server_first = server_first_text(server.step(&client.first()).unwrap());
        let client_final = String::from_utf8(client.step(&server_first).unwrap()).unwrap();
        (server, client, client_final)
    }

    #[test]
    fn tampered_nonce_fails() {
        let store = store();
        for mechanism in MECHANISMS {
            // Something in front of the nonce is tolerated as Kafka does (the
            // proof, computed over the genuine message, then fails)...
            let (mut server, _, client_final) = half_exchange(&store, mechanism);
            let prefixed = client_final.replacen(",r=", ",r=X", 1);
            assert!(matches!(
                server.step(prefixed.as_bytes()),
                Err(SaslError::AuthenticationFailed)
            ));
            // ...but the combined nonce must be there in full.
            let (mut server, _, client_final) = half_exchange(&store, mechanism);
            let tampered = client_final.replacen(",p=", "X,p=", 1);
            assert!(matches!(
                server.step(tampered.as_bytes()),
                Err(SaslError::NonceMismatch)
            ));
            assert!(server.has_failed());
            // The failure is terminal, even for the genuine message.
            assert!(matches!(
                server.step(client_final.as_bytes()),
                Err(SaslError::InvalidState { .. })
            ));
        }
    }

    #[test]
    fn client_refuses_a_server_nonce_that_does_not_extend_its_own() {
        let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret").unwrap();
        let err = client
            .step(b"r=someoneelsesnonce,s=c2FsdA==,i=4096")
            .unwrap_err();
        assert!(matches!(err, SaslError::NonceMismatch));
        // Same nonce without a server part is refused too.
        let mut client =
            ScramClient::with_fixed_nonce(Mechanism::ScramSha256, "ingest", "s3cret", "abc")
                .unwrap();
        assert!(matches!(
            client.step(b"r=abc,s=c2FsdA==,i=4096"),
            Err(SaslError::NonceMismatch)
        ));
    }

    #[test]
    fn client_refuses_weak_or_huge_iteration_counts() {
        for iterations in ["1", "4095", "1048577", "4294967295"] {
            let mut client =
                ScramClient::with_fixed_nonce(Mechanism::ScramSha256, "u", "p", "abc").unwrap();
            let server_first = format!("r=abcdef,s=c2FsdA==,i={iterations}");
            assert!(
                matches!(
                    client.step(server_first.as_bytes()),
                    Err(SaslError::IterationsOutOfRange { .. })
                ),
                "{iterations}"
            );
        }
    }

    #[test]
    fn tampered_proof_fails() {
        let store = store();
        for mechanism in MECHANISMS {
            let (mut server, _, client_final) = half_exchange(&store, mechanism);
            let (head, proof) = client_final.rsplit_once(",p=").unwrap();
            let mut proof = b64_decode(proof).unwrap();
            proof[0] ^= 1;
            let tampered = format!("{head},p={}", crate::crypto::b64_encode(&proof));
            assert!(matches!(
                server.step(tampered.as_bytes()),
                Err(SaslError::AuthenticationFailed)
            ));
            // A proof of the wrong length is refused as malformed.
            let (mut server, _, client_final) = half_exchange(&store, mechanism);
            let short = format!("{},p=AAAA", client_final.rsplit_once(",p=").unwrap().0);
            assert!(matches!(
                server.step(short.as_bytes()),
                Err(SaslError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn tampered_channel_binding_fails() {
        let store = store();
        let (mut server, _, client_final) = half_exchange(&store, Mechanism::ScramSha256);
        // "eSws" is base64("y,,"), but the client sent "n,,".
        let tampered = client_final.replacen("c=biws", "c=eSws", 1);
        assert!(matches!(
            server.step(tampered.as_bytes()),
            Err(SaslError::ChannelBindingNotSupported)
        ));
    }

    #[test]
    fn gs2_y_flag_and_authzid_are_echoed_in_channel_binding() {
        // Drive the server by hand with a client that sends "y,," or "n,a=ingest,":
        // the client-final must carry base64 of that exact header.
        let store = store();
        let credential = store.user("ingest").unwrap().scram_sha_256.clone().unwrap();
        for gs2 in ["y,,", "n,a=ingest,"] {
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
            let bare = "n=ingest,r=clientnonce";
            let server_first = String::from_utf8(server_first_text(
                server.step(format!("{gs2}{bare}").as_bytes()).unwrap(),
            ))
            .unwrap();
            let nonce = server_first
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("r=");
            let without_proof =
                format!("c={},r={nonce}", crate::crypto::b64_encode(gs2.as_bytes()));
            let proof = manual_proof(
                &credential,
                "s3cret",
                &format!("{bare},{server_first},{without_proof}"),
            );
            let client_final = format!("{without_proof},p={proof}");
            assert!(
                matches!(server.step(client_final.as_bytes()), Ok(Step::Done { .. })),
                "{gs2}"
            );
        }
    }

    /// ClientProof computed independently of ScramClient.
    fn manual_proof(credential: &ScramCredential, password: &str, auth_message: &str) -> String {
        use crate::crypto::{b64_encode, xor, Hash};
        let hash = Hash::Sha256;
        let salted = hash.salted_password(
            password.as_bytes(),
            credential.salt(),
            std::num::NonZeroU32::new(credential.iterations()).unwrap(),
        );
        let keys = hash.keys(&salted).unwrap();
        assert_eq!(&*keys.stored_key, credential.stored_key());
        let signature = hash.mac(&keys.stored_key, auth_message.as_bytes()).unwrap();
        b64_encode(&xor(&keys.client_key, &signature))
    }

    #[test]
    fn replayed_client_final_fails_on_a_new_server() {
        let store = store();
        for mechanism in MECHANISMS {
            let mut server = ScramServer::new(mechanism, &store).unwrap();
            let mut client = ScramClient::new(mechanism, "ingest", "s3cret").unwrap();
            let client_first = client.first();
            let server_first = server_first_text(server.step(&client_first).unwrap());
            let client_final = client.step(&server_first).unwrap();
            assert!(matches!(server.step(&client_final), Ok(Step::Done { .. })));

            // An eavesdropper replays both client messages to a new server.
            let mut replayed = ScramServer::new(mechanism, &store).unwrap();
            let _ = server_first_text(replayed.step(&client_first).unwrap());
            assert!(matches!(
                replayed.step(&client_final),
                Err(SaslError::NonceMismatch)
            ));
        }
    }

    #[test]
    fn client_detects_a_server_that_does_not_know_the_credential() {
        let store = store();
        for mechanism in MECHANISMS {
            let (mut server, mut client, client_final) = half_exchange(&store, mechanism);
            let Ok(Step::Done { response, .. }) = server.step(client_final.as_bytes()) else {
                panic!("exchange failed");
            };
            let mut signature = b64_decode(std::str::from_utf8(&response[2..]).unwrap()).unwrap();
            signature[3] ^= 0x80;
            let forged = format!("v={}", crate::crypto::b64_encode(&signature));
            assert!(matches!(
                client.finish(forged.as_bytes()),
                Err(SaslError::ServerSignatureMismatch)
            ));
            assert!(matches!(
                client.finish(&response),
                Err(SaslError::InvalidState { .. })
            ));
        }
        let (_, mut client, _) = half_exchange(&store, Mechanism::ScramSha256);
        assert!(matches!(
            client.finish(b"e=invalid-proof"),
            Err(SaslError::ServerRejected { reason }) if reason == "invalid-proof"
        ));
    }

    #[test]
    fn refusals_on_client_first() {
        let store = store();
        let first_error = |message: &str| {
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
            let err = server.step(message.as_bytes()).unwrap_err();
            assert!(server.has_failed());
            err
        };
        assert!(matches!(
            first_error("n,,n=ingest,r=abc,tokenauth=true"),
            SaslError::UnsupportedExtension { .. }
        ));
        assert!(matches!(
            first_error("p=tls-server-end-point,,n=ingest,r=abc"),
            SaslError::ChannelBindingNotSupported
        ));
        assert!(matches!(
            first_error("n,a=admin,n=ingest,r=abc"),
            SaslError::AuthzidMismatch
        ));
        assert!(matches!(
            first_error("garbage"),
            SaslError::Malformed { .. }
        ));
        assert!(matches!(
            first_error(&"x".repeat(5000)),
            SaslError::Malformed { .. }
        ));
        assert!(matches!(
            ScramServer::new(Mechanism::Plain, &store),
            Err(SaslError::UnsupportedMechanism { .. })
        ));
        assert!(matches!(
            ScramClient::new(Mechanism::Plain, "u", "p"),
            Err(SaslError::UnsupportedMechanism { .. })
        ));
    }

    #[test]
    fn state_machines_refuse_misuse() {
        let store = store();
        let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
        let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret").unwrap();
        assert!(matches!(
            client.finish(b"v=AAAA"),
            Err(SaslError::InvalidState { .. })
        ));

        let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret").unwrap();
        let server_first = server_first_text(server.step(&client.first()).unwrap());
        let client_final = client.step(&server_first).unwrap();
        assert!(matches!(
            client.step(&server_first),
            Err(SaslError::InvalidState { .. })
        ));
        assert!(matches!(server.step(&client_final), Ok(Step::Done { .. })));
        assert!(matches!(
            server.step(&client_final),
            Err(SaslError::InvalidState { .. })
        ));
    }

    #[test]
    fn errors_and_debug_output_never_contain_secrets() {
        let store = store();
        let (mut server, client, client_final) = half_exchange(&store, Mechanism::ScramSha256);
        let proof = client_final.rsplit_once(",p=").unwrap().1.to_owned();
        let tampered = client_final.replacen(",r=", ",r=X", 1);
        let err = server.step(tampered.as_bytes()).unwrap_err();
        for text in [
            err.to_string(),
            format!("{err:?}"),
            format!("{server:?}"),
            format!("{client:?}"),
        ] {
            assert!(!text.contains("s3cret") && !text.contains(&proof), "{text}");
        }
    }

    /// Every single-byte mutation (and every truncation) of valid messages
    /// must yield an error or a valid step, never a panic, and a mutated
    /// client-final must never authenticate.
    #[test]
    fn mutated_messages_never_panic_or_authenticate() {
        let store = store();
        let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret").unwrap();
        let client_first = client.first();
        let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
        let server_first = server_first_text(server.step(&client_first).unwrap());
        let client_final = client.step(&server_first).unwrap();

        let mutations = |message: &[u8]| {
            let mut out = Vec::new();
            for at in 0..message.len() {
                out.push(message[..at].to_vec());
                for byte in [0u8, b',', b'=', b'A', 0x7f, 0xc3, 0xff] {
                    let mut mutated = message.to_vec();
                    mutated[at] = byte;
                    out.push(mutated);
                }
            }
            out
        };
        for mutated in mutations(&client_first) {
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
            let _ = server.step(&mutated);
            let _ = crate::plain::parse_plain(&mutated);
        }
        for mutated in mutations(&server_first) {
            let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret").unwrap();
            let _ = client.step(&mutated);
        }
        for mutated in mutations(&client_final) {
            if mutated == client_final {
                continue;
            }
            // Replay the genuine first half with the same nonce, then the mutation.
            let server_nonce = std::str::from_utf8(&server_first)
                .unwrap()
                .split(',')
                .next()
                .unwrap()[2 + 32..]
                .to_owned();
            let mut server = ScramServer::new(Mechanism::ScramSha256, &store)
                .unwrap()
                .with_server_nonce(&server_nonce);
            assert_eq!(
                server_first_text(server.step(&client_first).unwrap()),
                server_first
            );
            assert!(
                server.step(&mutated).is_err(),
                "{:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
        let mut server = ScramServer::new(Mechanism::ScramSha256, &store).unwrap();
        let _ = server_first_text(server.step(&client_first).unwrap());
        assert!(
            server.step(&client_final).is_err(),
            "different server nonce"
        );
    }
}
