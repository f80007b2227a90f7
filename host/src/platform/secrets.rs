//! Secrets: named sets of `KEY=VALUE` created with `modal secret create`,
//! encrypted at rest (XChaCha20-Poly1305 under the state directory's
//! `secret.key`, apart from the registry) in a [`SecretStore`], attached to
//! versions by name and revision, and given to the guest as environment
//! variables. Values leave this module only as a [`SecretEnv`] for the
//! instances of a version.

use super::{Platform, now_ms};
use crate::SecretEnv;
use crate::error::Error;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A secret as a version records it: its name and the revision deployed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The secret's name.
    pub name: String,
    /// Its revision (1 for the first `create`, +1 for each `--force`).
    pub revision: u64,
}

/// One stored revision of a secret: its keys in clear, its values sealed.
#[derive(Clone, Debug)]
pub struct SealedSecret {
    /// The secret's name.
    pub name: String,
    /// The revision.
    pub revision: u64,
    /// The variable names.
    pub keys: Vec<String>,
    /// The AEAD nonce.
    pub nonce: Vec<u8>,
    /// The sealed `KEY=VALUE` list.
    pub ciphertext: Vec<u8>,
    /// When the revision was created, Unix ms.
    pub created_at: u64,
}

/// What is shown of a secret: never its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// Its latest revision.
    pub revision: u64,
    /// Its variable names.
    pub keys: Vec<String>,
    /// When it was first created, Unix ms.
    pub created_at: u64,
    /// When its latest revision was created, Unix ms.
    pub updated_at: u64,
    /// The apps whose live version uses it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// Where secrets are kept (sealed). Each method is one operation.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Stores a new revision of `secret.name` (the next one, whatever
    /// `secret.revision` says) and returns its number.
    async fn insert(&self, secret: SealedSecret) -> Result<u64, Error>;
    /// Revision `revision` of secret `name`, or its latest with `None`.
    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<SealedSecret>, Error>;
    /// The latest revision of every secret and when each was first
    /// created, by name.
    async fn list(&self) -> Result<Vec<(SealedSecret, u64)>, Error>;
    /// Removes every revision of `name`; whether there was one.
    async fn delete(&self, name: &str) -> Result<bool, Error>;
}

/// The key that seals secrets.
#[derive(Clone)]
pub struct SecretKey(chacha20poly1305::Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// The key file's name in the state directory.
pub const SECRET_KEY_FILE: &str = "secret.key";

impl SecretKey {
    /// The key of `state_dir/secret.key`, created (32 random bytes, hex,
    /// mode 0600) when missing.
    pub fn load_or_create(state_dir: &Path) -> Result<SecretKey, Error> {
        SecretKey::load_or_create_file(&state_dir.join(SECRET_KEY_FILE))
    }

    /// The key in the file `path` (64 hex digits), created (mode 0600)
    /// when missing: in a cluster every host is given the same file.
    pub fn load_or_create_file(path: &Path) -> Result<SecretKey, Error> {
        let io = |doing: &str| {
            let context = format!("{doing} {}", path.display());
            move |source| Error::Io { context, source }
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| {
                    Error::Internal(format!("no randomness for the secret key: {e}"))
                })?;
                let text = hex::encode(bytes);
                use std::io::Write;
                let mut file = super::state::private_file(path).map_err(io("creating"))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io("writing"))?;
                text
            }
            Err(e) => return Err(io("reading")(e)),
        };
        SecretKey::from_hex(&text).ok_or_else(|| {
            Error::Internal(format!(
                "{} is not a secret key (64 hex digits); restore it from a backup, or remove \
                 it and create the secrets again",
                path.display()
            ))
        })
    }

    /// The key written as 64 hex digits (surrounding space ignored).
    pub fn from_hex(text: &str) -> Option<SecretKey> {
        let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32)?;
        Some(SecretKey(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// A digest that tells keys apart without revealing them: hosts of a
    /// cluster compare theirs with the one stored.
    pub(crate) fn fingerprint(&self) -> String {
        let mut bytes = b"modal secret key check:".to_vec();
        bytes.extend_from_slice(self.0.as_slice());
        crate::compile::digest(&bytes)
    }

    /// A random key held in memory (tests, or stores without a file).
    pub fn random() -> Result<SecretKey, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Internal(format!("no randomness for the secret key: {e}")))?;
        Ok(SecretKey(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    fn seal(&self, name: &str, vars: &[(String, String)]) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::Internal(format!("no randomness for a nonce: {e}")))?;
        let plain = serde_json::to_vec(vars)
            .map_err(|e| Error::Internal(format!("encoding a secret: {e}")))?;
        let payload = Payload {
            msg: &plain,
            aad: name.as_bytes(),
        };
        let sealed = XChaCha20Poly1305::new(&self.0)
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| Error::Internal("sealing a secret failed".into()))?;
        Ok((nonce.to_vec(), sealed))
    }

    fn open(&self, secret: &SealedSecret) -> Result<Vec<(String, String)>, Error> {
        let broken = || {
            Error::Internal(format!(
                "secret `{}` (revision {}) does not open with this state directory's {SECRET_KEY_FILE}",
                secret.name, secret.revision
            ))
        };
        if secret.nonce.len() != 24 {
            return Err(broken());
        }
        let payload = Payload {
            msg: &secret.ciphertext,
            aad: secret.name.as_bytes(),
        };
        let plain = XChaCha20Poly1305::new(&self.0)
            .decrypt(XNonce::from_slice(&secret.nonce), payload)
            .map_err(|_| broken())?;
        serde_json::from_slice(&plain).map_err(|_| broken())
    }
}

/// Checks a secret's name: 1 to 63 letters, digits, `-` or `_`, starting
/// with a letter or digit.
pub fn validate_secret_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "invalid secret name `{}`: use 1 to 63 letters, digits, `-` or `_`, starting with a letter or digit",
            name.escape_debug()
        )))
    }
}

impl Platform {
    /// Creates secret `name` with `vars`, or with `force` a new revision of
    /// an existing one (versions deployed with an older revision keep it;
    /// the next deploy takes the new one).
    pub async fn create_secret(
        &self,
        name: &str,
        vars: Vec<(String, String)>,
        force: bool,
    ) -> Result<SecretInfo, Error> {
        validate_secret_name(name)?;
        if vars.is_empty() {
            return Err(Error::BadInput(format!(
                "secret `{name}` needs at least one KEY=VALUE"
            )));
        }
        super::validate_env(&vars)?;
        let mut keys: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        if let Some(twice) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::BadInput(format!("`{}` is given twice", twice[0])));
        }
        let store = &self.inner.secrets;
        let existing = store.get(name, None).await?;
        if existing.is_some() && !force {
            return Err(Error::BadInput(format!(
                "secret `{name}` already exists; add --force to replace it (versions deployed \
                 with it keep their values; the next deploy takes the new ones)"
            )));
        }
        let (nonce, ciphertext) = self.inner.secret_key.seal(name, &vars)?;
        let at = now_ms();
        let sealed = SealedSecret {
            name: name.to_string(),
            revision: 0,
            keys: keys.clone(),
            nonce,
            ciphertext,
            created_at: at,
        };
        let revision = store.insert(sealed).await?;
        tracing::info!(secret = name, revision, "secret stored");
        Ok(SecretInfo {
            name: name.to_string(),
            revision,
            keys,
            created_at: existing.map_or(at, |e| e.created_at.min(at)),
            updated_at: at,
            used_by: self.apps_using(name).await?,
        })
    }

    /// Every secret, with the apps whose live version uses it.
    pub async fn secrets(&self) -> Result<Vec<SecretInfo>, Error> {
        let mut users = self.secret_users().await?;
        let mut infos = Vec::new();
        for (latest, created_at) in self.inner.secrets.list().await? {
            infos.push(SecretInfo {
                used_by: users.remove(&latest.name).unwrap_or_default(),
                name: latest.name,
                revision: latest.revision,
                keys: latest.keys,
                created_at,
                updated_at: latest.created_at,
            });
        }
        Ok(infos)
    }

    /// Deletes every revision of secret `name`. Refused while a live
    /// version uses it, unless `force` (that version keeps running, but
    /// cannot be loaded again).
    pub async fn delete_secret(&self, name: &str, force: bool) -> Result<(), Error> {
        let users = self.apps_using(name).await?;
        if !users.is_empty() && !force {
            return Err(Error::BadInput(format!(
                "secret `{name}` is used by the live version of {}; redeploy without it, or add \
                 --force (a version using it could then not be loaded again)",
                users.join(", ")
            )));
        }
        if !self.inner.secrets.delete(name).await? {
            return Err(Error::BadInput(format!("no secret named `{name}`")));
        }
        tracing::info!(secret = name, "secret deleted");
        Ok(())
    }

    /// The apps whose live version was deployed with secret `name`.
    async fn apps_using(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self.secret_users().await?.remove(name).unwrap_or_default())
    }

    /// For each secret a live version was deployed with, those apps: one
    /// pass over the registry, whatever the number of secrets.
    async fn secret_users(&self) -> Result<std::collections::HashMap<String, Vec<String>>, Error> {
        let registry = &self.inner.registry;
        let mut users: std::collections::HashMap<String, Vec<String>> = Default::default();
        for app in registry.apps().await? {
            let (super::AppState::Deployed, Some(live)) = (app.state, app.live_version) else {
                continue;
            };
            if let Some(v) = registry.version(&app.name, live).await? {
                for secret in v.secrets {
                    users.entry(secret.name).or_default().push(app.name.clone());
                }
            }
        }
        Ok(users)
    }

    /// The latest revisions of the secrets `names`, or the error naming
    /// the first missing one.
    pub(super) async fn latest_secrets(&self, names: &[String]) -> Result<Vec<SecretRef>, Error> {
        let mut refs: Vec<SecretRef> = Vec::new();
        for name in names {
            if refs.iter().any(|r| &r.name == name) {
                continue;
            }
            let found = self.inner.secrets.get(name, None).await?;
            let secret = found.ok_or_else(|| missing(name))?;
            refs.push(SecretRef {
                name: secret.name,
                revision: secret.revision,
            });
        }
        Ok(refs)
    }

    /// The environment of the secret revisions `refs`. A variable set by
    /// two of them, or also by `env`, is refused.
    pub(super) async fn secret_env(
        &self,
        refs: &[SecretRef],
        env: &[(String, String)],
    ) -> Result<SecretEnv, Error> {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut from: Vec<&str> = Vec::new();
        for r in refs {
            let found = self.inner.secrets.get(&r.name, Some(r.revision)).await?;
            let sealed = found.ok_or_else(|| missing(&r.name))?;
            for (key, value) in self.inner.secret_key.open(&sealed)? {
                if let Some(i) = vars.iter().position(|(k, _)| *k == key) {
                    return Err(Error::BadInput(format!(
                        "`{key}` is set by both secret `{}` and secret `{}`",
                        from[i], r.name
                    )));
                }
                if env.iter().any(|(k, _)| *k == key) {
                    return Err(Error::BadInput(format!(
                        "`{key}` is set by both --env and secret `{}`",
                        r.name
                    )));
                }
                vars.push((key, value));
                from.push(&r.name);
            }
        }
        Ok(SecretEnv::new(vars))
    }
}

/// The latest values of the secrets of state directory `state_dir`, for
/// `modal run` and `modal serve`, which run apart from a server: those
/// named in `names`, or every one with `None`. A missing secret is refused
/// with the line a deploy gives; a state directory without secrets has
/// none (nothing is created in it).
pub async fn local_secrets(
    state_dir: &Path,
    names: Option<&[String]>,
) -> Result<Vec<(String, Vec<(String, String)>)>, Error> {
    let db = state_dir.join("secrets.db");
    if !db.exists() || !state_dir.join(SECRET_KEY_FILE).exists() {
        return match names.and_then(|n| n.first()) {
            Some(name) => Err(missing(name)),
            None => Ok(Vec::new()),
        };
    }
    let store = super::sqlite::SqliteSecrets::open(&db)?;
    let key = SecretKey::load_or_create(state_dir)?;
    let sealed = match names {
        None => store.list().await?.into_iter().map(|(s, _)| s).collect(),
        Some(names) => {
            let mut found = Vec::new();
            for name in names {
                if found.iter().any(|s: &SealedSecret| &s.name == name) {
                    continue;
                }
                found.push(store.get(name, None).await?.ok_or_else(|| missing(name))?);
            }
            found
        }
    };
    sealed
        .into_iter()
        .map(|s| Ok((s.name.clone(), key.open(&s)?)))
        .collect()
}

fn missing(name: &str) -> Error {
    Error::BadInput(format!(
        "no secret named `{name}`; create it with `modal secret create {name} KEY=VALUE`"
    ))
}
