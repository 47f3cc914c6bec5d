//! SCRAM-SHA-256 (RFC 5802, RFC 7677) and SCRAM-SHA-256-PLUS, client side, written here so
//! that the costly part, the salted password (PBKDF2, 4,096 HMAC rounds by default), is
//! derived once per (password, salt, iterations) in the process and reused: these are the same
//! for every connection of a run. The proof and the server's signature still depend on each
//! connection's nonces, so both are computed and checked on every connection.
//!
//! HMAC and SHA-256 come from the RustCrypto crates that `postgres-protocol` already builds,
//! not from OpenSSL: measured here (OpenSSL 3), OpenSSL's PBKDF2 took 2.6 ms for 4,096 rounds
//! and each one-off HMAC paid a provider lookup, more than the rest of a request.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::error::WireError;

/// More iterations than this is a server to refuse, not a key to derive: PBKDF2 is one
/// uninterruptible call, and the request's deadline must hold (PostgreSQL's default is 4,096).
const MAX_ITERATIONS: u32 = 1 << 20;

/// The keys derived from the salted password: all the client needs for any number of logins.
#[derive(Clone, Copy)]
struct Keys {
    client_key: [u8; 32],
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

type CacheKey = (String, Vec<u8>, u32);
/// One slot per (password, salt, iterations): the first connection to need it derives the
/// keys, and the others of the same moment wait for it rather than derive them again.
static CACHE: Mutex<Option<HashMap<CacheKey, Slot>>> = Mutex::new(None);
type Slot = Arc<Mutex<Option<Keys>>>;
thread_local! {
    /// How many times PBKDF2 ran on this thread: per thread, so that a test counts its own
    /// connections' derivations and not those of tests running beside it.
    static DERIVATIONS: Cell<u64> = const { Cell::new(0) };
}

/// How many salted passwords this thread derived so far.
pub fn key_derivations() -> u64 {
    DERIVATIONS.get()
}

/// Forgets the cached keys (for benchmarks that compare the two ways).
pub fn clear_key_cache() {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA-256 keyed with `key` (any length is accepted: longer keys are hashed).
fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Hi() of RFC 5802, i.e. PBKDF2-HMAC-SHA-256 with one block: the password is keyed once and
/// the keyed state copied for each of the `iterations` rounds.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let key = keyed(password);
    let mut mac = key.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut round: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = round;
    for _ in 1..iterations {
        let mut mac = key.clone();
        mac.update(&round);
        round = mac.finalize().into_bytes().into();
        out.iter_mut().zip(round).for_each(|(o, r)| *o ^= r);
    }
    out
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> Keys {
    DERIVATIONS.set(DERIVATIONS.get() + 1);
    let salted = salted_password(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    Keys {
        client_key,
        stored_key: Sha256::digest(client_key).into(),
        server_key: hmac(&salted, b"Server Key"),
    }
}

/// The keys for these inputs: from the cache, or derived (and cached unless `per_connection`).
fn keys(password: &str, salt: &[u8], iterations: u32, per_connection: bool) -> Keys {
    if per_connection {
        return derive(password, salt, iterations);
    }
    let slot: Slot = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let key = (password.to_owned(), salt.to_vec(), iterations);
        let map = cache.get_or_insert_with(HashMap::new);
        map.entry(key).or_default().clone()
    };
    // Held while deriving: the other connections of a step wait here instead of deriving too.
    let mut keys = slot.lock().unwrap_or_else(|e| e.into_inner());
    *keys.get_or_insert_with(|| derive(password, salt, iterations))
}

/// One SCRAM exchange: the client's nonce, channel binding, and what the server must prove.
pub struct ScramClient {
    password: String,
    per_connection: bool,
    /// The GS2 header: "n,," (no binding), "y,," (could bind, server did not offer), or
    /// "p=tls-server-end-point,," with the binding data below.
    gs2_header: &'static str,
    binding: Vec<u8>,
    client_first_bare: String,
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// `binding`: the tls-server-end-point data when the connection is TLS and the client binds
    /// (SCRAM-SHA-256-PLUS); `tls` says whether the connection is TLS at all.
    pub fn new(
        password: &str,
        per_connection: bool,
        tls: bool,
        binding: Option<Vec<u8>>,
    ) -> Result<Self, WireError> {
        // The thread's own CSPRNG (ChaCha, seeded from the OS): OpenSSL's `RAND_bytes` set up a
        // generator of its own on each thread's first call, 5% of a burst run's CPU.
        let mut nonce = [0u8; 18];
        rand::RngExt::fill(&mut rand::rng(), &mut nonce[..]);
        let gs2_header = match (&binding, tls) {
            (Some(_), _) => "p=tls-server-end-point,,",
            (None, true) => "y,,",
            (None, false) => "n,,",
        };
        Ok(ScramClient {
            // SASLprep as the server applies it; like libpq, the raw password when it fails.
            password: stringprep::saslprep(password)
                .map_or_else(|_| password.to_owned(), |p| p.into_owned()),
            per_connection,
            gs2_header,
            binding: binding.unwrap_or_default(),
            client_first_bare: format!("n=,r={}", B64.encode(nonce)),
            expected_server_signature: None,
        })
    }

    /// The mechanism to name in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        if self.gs2_header.starts_with('p') {
            "SCRAM-SHA-256-PLUS"
        } else {
            "SCRAM-SHA-256"
        }
    }

    /// client-first-message (the user name is left empty: PostgreSQL takes it from startup).
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// client-final-message with the proof, for the server-first-message received.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, WireError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| WireError::protocol("SCRAM server-first-message is not UTF-8"))?;
        let (nonce, salt, iterations) = parse_server_first(server_first)?;
        // The bare message ends with our nonce: "n=<user>,r=<nonce>".
        let client_nonce = self
            .client_first_bare
            .rsplit("r=")
            .next()
            .unwrap_or_default();
        if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
            return Err(WireError::Auth(
                "SCRAM server nonce does not extend ours".into(),
            ));
        }
        let keys = keys(&self.password, &salt, iterations, self.per_connection);
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.binding);
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.expected_server_signature = Some(hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final-message: the server proves it knows the password.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), WireError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| WireError::protocol("SCRAM server-final-message is not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(WireError::Auth(format!(
                "SCRAM error from the server: {error}"
            )));
        }
        let verifier = text
            .split(',')
            .find_map(|part| part.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| WireError::protocol("SCRAM server-final-message without a verifier"))?;
        match self.expected_server_signature {
            Some(expected) if verifier.len() == 32 && openssl::memcmp::eq(&expected, &verifier) => {
                Ok(())
            }
            _ => Err(WireError::Auth(
                "the server's SCRAM signature is wrong".into(),
            )),
        }
    }
}

/// The nonce, salt and iteration count of a server-first-message.
fn parse_server_first(text: &str) -> Result<(&str, Vec<u8>, u32), WireError> {
    let bad = || WireError::protocol(format!("bad SCRAM server-first-message {text:?}"));
    let (mut nonce, mut salt, mut iterations) = (None, None, None);
    for part in text.split(',') {
        match part.split_at_checked(2) {
            Some(("r=", value)) => nonce = Some(value),
            Some(("s=", value)) => salt = B64.decode(value).ok(),
            Some(("i=", value)) => iterations = value.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (nonce, salt, iterations) = (
        nonce.ok_or_else(bad)?,
        salt.ok_or_else(bad)?,
        iterations.ok_or_else(bad)?,
    );
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(WireError::protocol(format!(
            "SCRAM iteration count {iterations} out of range"
        )));
    }
    Ok((nonce, salt, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 example of RFC 7677, section 3 (password "pencil"); the client's
    /// nonce is set to the RFC's. The server signature is the one Python's hmac/hashlib
    /// compute for these inputs.
    #[test]
    fn rfc7677_example_gives_its_proof_and_accepts_its_signature() {
        let mut client = ScramClient::new("pencil", true, false, None).unwrap();
        client.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = client.client_final(server_first).unwrap();
        assert_eq!(
            last,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(client.verify_server_final(b"v=AAAA").is_err());
        assert!(matches!(
            client.verify_server_final(b"e=invalid-proof"),
            Err(WireError::Auth(_))
        ));
    }

    #[test]
    fn cached_keys_are_derived_once_and_equal_per_connection_keys() {
        let salt = b"pgstress-test-salt";
        let cached = keys("secret", salt, 64, false);
        let before = key_derivations();
        let again = keys("secret", salt, 64, false);
        assert_eq!(key_derivations(), before, "the second lookup derived again");
        let fresh = keys("secret", salt, 64, true);
        assert_eq!(cached.client_key, again.client_key);
        assert_eq!(cached.server_key, fresh.server_key);
        assert_eq!(cached.stored_key, fresh.stored_key);
    }

    #[test]
    fn malformed_server_first_messages_are_refused() {
        for bad in [
            "",
            "r=x",
            "r=x,s=!!,i=1",
            "r=x,s=AAAA,i=0",
            "r=x,s=AAAA,i=4294967295",
        ] {
            assert!(parse_server_first(bad).is_err(), "{bad}");
        }
        let mut client = ScramClient::new("p", false, false, None).unwrap();
        // A nonce that is not an extension of ours: a replayed or forged exchange.
        assert!(client.client_final(b"r=abc,s=AAAA,i=4096").is_err());
    }
}
