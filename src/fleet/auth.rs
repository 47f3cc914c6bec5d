//! The shared token (`PGSTRESS_TOKEN`) proven in each direction without sending it: each side
//! sends a fresh random nonce and answers the other's with HMAC-SHA-256 over both nonces and
//! its role, so that neither a recorded exchange nor one side's answer can be replayed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Which side proves: the roles differ so the coordinator's proof is never a valid agent's.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Coordinator,
    Agent,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Coordinator => b"pgstress coordinator v1",
            Role::Agent => b"pgstress agent v1",
        }
    }
}

/// A fresh random nonce (32 bytes, base64).
pub fn nonce() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator; failing that, the thread's seeded from it.
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        rand::fill(&mut bytes);
    }
    STANDARD.encode(bytes)
}

fn keyed(token: &str, role: Role, challenge: &str, answerer: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes())
        .expect("HMAC takes a key of any length");
    for part in [role.label(), challenge.as_bytes(), answerer.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The proof that `role` holds `token`, answering the other side's `challenge` nonce with its
/// own nonce `answerer` bound in.
pub fn prove(token: &str, role: Role, challenge: &str, answerer: &str) -> String {
    STANDARD.encode(
        keyed(token, role, challenge, answerer)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `proof` is `role`'s right answer; compared in constant time.
pub fn verify(token: &str, role: Role, challenge: &str, answerer: &str, proof: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(proof) else {
        return false;
    };
    keyed(token, role, challenge, answerer)
        .verify_slice(&bytes)
        .is_ok()
}

/// The token from the environment; an empty one counts as none.
pub fn token_from_env() -> Option<String> {
    std::env::var(super::TOKEN_VAR)
        .ok()
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_role_and_nonces_verify() {
        let (challenge, answerer) = (nonce(), nonce());
        assert_ne!(challenge, answerer, "nonces are fresh");
        let proof = prove("s3cret", Role::Agent, &challenge, &answerer);
        assert!(verify("s3cret", Role::Agent, &challenge, &answerer, &proof));
        assert!(!verify("wrong", Role::Agent, &challenge, &answerer, &proof));
        assert!(!verify(
            "s3cret",
            Role::Coordinator,
            &challenge,
            &answerer,
            &proof
        ));
        assert!(!verify(
            "s3cret",
            Role::Agent,
            &answerer,
            &challenge,
            &proof
        ));
        assert!(!verify(
            "s3cret",
            Role::Agent,
            &challenge,
            &answerer,
            "garbage"
        ));
    }
}
