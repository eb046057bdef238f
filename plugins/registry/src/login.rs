//! How the plugin's own requests (smoke check, retention, pruning) log in to
//! the registry: Basic with htpasswd auth, or, with token auth, a token the
//! plugin mints itself with exactly the grants the token service would give
//! the same user, so the smoke check proves what each user can do.

use cairn_sdk::http::Method;

use crate::secrets::{Credentials, User};
use crate::token::{Access, Signer};

pub struct Login<'a> {
    pub credentials: &'a Credentials,
    /// With token auth: the signer, and the service tokens are for.
    pub tokens: Option<(&'a Signer, String)>,
}

impl Login<'_> {
    /// The `Authorization` value for `user`'s `method` on `url` (a URL or a path).
    pub fn authorization(&self, user: User, method: &Method, url: &str) -> Result<String, String> {
        let Some((signer, service)) = &self.tokens else {
            return Ok(self.credentials.basic_auth(user));
        };
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
            None => url,
        };
        let access: Vec<Access> = Access::needed_for(method.as_str(), path)
            .and_then(|needed| needed.granted_to(user))
            .into_iter()
            .collect();
        let token = signer.mint(service, user.name(), &access)?;
        Ok(format!("Bearer {token}"))
    }

    /// Whether the registry checks tokens (and so refuses `runtime` pushes).
    pub fn uses_tokens(&self) -> bool {
        self.tokens.is_some()
    }
}
