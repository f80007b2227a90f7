//! The secret environment of an app version: variables whose values come
//! from secrets (`modal secret create`). Their values reach the guest's
//! environment only: `Debug` shows keys, and captured logs and error texts
//! have the values replaced by `***` before anyone sees them.

use std::sync::Arc;

/// Values shorter than this are not masked (masking `1` or `on` would
/// mangle every log, and so short a value is no secret).
pub const MIN_MASKED: usize = 4;

/// What a masked value is replaced with.
const MASK: &str = "***";

/// Secret environment variables, `KEY=VALUE`.
#[derive(Clone, Default)]
pub struct SecretEnv {
    vars: Arc<[(String, String)]>,
    /// The values to mask, longest first (so a value that contains another
    /// is masked whole).
    masks: Arc<[String]>,
}

impl SecretEnv {
    /// The variables `vars`.
    pub fn new(vars: Vec<(String, String)>) -> SecretEnv {
        let mut masks: Vec<String> = vars
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() >= MIN_MASKED)
            .collect();
        masks.sort_by_key(|v| std::cmp::Reverse(v.len()));
        masks.dedup();
        SecretEnv {
            vars: vars.into(),
            masks: masks.into(),
        }
    }

    /// The variables, for the guest's environment.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: String) -> String {
        if !self.masks.iter().any(|m| text.contains(m.as_str())) {
            return text;
        }
        let mut text = text;
        for m in self.masks.iter() {
            text = text.replace(m.as_str(), MASK);
        }
        text
    }

    /// `error` with secret values masked in the texts it carries from the
    /// guest.
    pub(crate) fn mask_error(&self, error: crate::Error) -> crate::Error {
        use crate::Error;
        if self.masks.is_empty() {
            return error;
        }
        match error {
            Error::Failed { function, message } => Error::Failed {
                function,
                message: self.mask(message),
            },
            Error::Trap { function, message } => Error::Trap {
                function,
                message: self.mask(message),
            },
            Error::BadInput(message) => Error::BadInput(self.mask(message)),
            Error::Instantiate { function, message } => Error::Instantiate {
                function,
                message: self.mask(message),
            },
            e => e,
        }
    }
}

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, _)| format!("{k}=***")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::SecretEnv;

    #[test]
    fn values_are_masked_and_never_printed() {
        let env = SecretEnv::new(vec![
            ("API_KEY".into(), "hunter2-secret".into()),
            ("PART".into(), "hunter2".into()),
            ("FLAG".into(), "on".into()),
        ]);
        assert_eq!(
            env.mask("key hunter2-secret and hunter2, on".into()),
            "key *** and ***, on"
        );
        assert_eq!(
            format!("{env:?}"),
            r#"["API_KEY=***", "PART=***", "FLAG=***"]"#
        );
        let e = env.mask_error(crate::Error::Failed {
            function: "f".into(),
            message: "bad key hunter2-secret".into(),
        });
        assert_eq!(e.to_string(), "function `f` failed: bad key ***");
    }
}
