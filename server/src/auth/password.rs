//! Local-account passwords: argon2id, hashed off the async runtime.
//!
//! Parameters are OWASP's minimum for argon2id (m = 19 MiB, t = 2, p = 1).
//! They are stored in each hash (PHC string), so raising them later keeps
//! old hashes verifiable.

use app::protocol::{ApiError, ErrorCode};
use argon2::{
    password_hash::{PasswordHasher, PasswordVerifier},
    Algorithm, Argon2, Params, Version,
};
use std::sync::OnceLock;

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

fn hasher() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|err| {
        tracing::error!(cause = %err, "argon2 parameters refused");
        internal()
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn internal() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "Something went wrong on our side; try again.",
    )
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub async fn hash(password: String) -> Result<String, ApiError> {
    // About 20 MiB and tens of milliseconds of CPU: a blocking thread's work.
    tokio::task::spawn_blocking(move || {
        let hash = hasher()?
            .hash_password(password.as_bytes())
            .map_err(|err| {
                tracing::error!(cause = %err, "password hashing failed");
                internal()
            })?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|_| internal())?
}

/// Whether `password` matches `phc`. With no account (`None`) a dummy hash is
/// checked instead, so an unknown email takes as long as a wrong password.
pub async fn verify(password: String, phc: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let argon2 = hasher()?;
        match phc {
            Some(phc) => Ok(argon2
                .verify_password(password.as_bytes(), phc.as_str())
                .is_ok()),
            None => {
                let dummy = dummy_hash()?;
                // Any outcome is a failure; only the time spent matters.
                let _ = argon2.verify_password(password.as_bytes(), dummy);
                Ok(false)
            }
        }
    })
    .await
    .map_err(|_| internal())?
}

/// A hash of a random password with the current parameters, made once.
fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hasher()?
        .hash_password(super::new_token().as_bytes())
        .map_err(|_| internal())?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_minimum_parameters_and_verify() {
        let phc = hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!verify("correct horse".into(), None).await.unwrap());
        assert_ne!(phc, hash("correct horse".into()).await.unwrap(), "salted");
    }
}
