//! Who is asking: the admin (the admin token), a customer (a bearer JWT
//! verified here with the configured key), or, in development only and when
//! switched on explicitly, an unverified caller.
//!
//! Tokens are verified with `jsonwebtoken` (RustCrypto backend): HS256 with a
//! shared secret, or RS256 / EdDSA with a PEM public key. The algorithm is
//! fixed by the key, never taken from the token. Claims: `sub` (the user id,
//! a positive integer as a string), `exp` and `aud`, all required; `exp` is
//! checked against the service's clock with [`LEEWAY_SECONDS`] of leeway.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use crate::http::{ApiError, ApiRequest, constant_time_eq};

/// Clock skew allowed between the token's issuer and us.
pub const LEEWAY_SECONDS: u64 = 30;
/// Shortest HS256 secret accepted: the hash's output size.
pub const MIN_SECRET_BYTES: usize = 32;

/// The caller of a customer route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `Authorization: Bearer <admin token>`: may act for any user.
    Admin,
    /// A verified customer token; the user id is its `sub`.
    Customer { user_id: u64 },
    /// Customer authentication is switched off (development only): the
    /// request names the user, as before identities existed.
    Unverified,
}

/// How customers are authenticated.
#[derive(Clone)]
pub enum CustomerAuth {
    Jwt { key: DecodingKey, algorithm: Algorithm, audience: String },
    /// No verification key is configured: every customer request is refused.
    Unconfigured,
    /// The development switch `customer_auth = "none"`.
    Off,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

impl CustomerAuth {
    /// From the `jwt_verification_key` variable: a PEM public key (`RSA` or
    /// RSA `PUBLIC KEY` for RS256, an Ed25519 `PUBLIC KEY` for EdDSA), or else an
    /// HS256 secret of at least [`MIN_SECRET_BYTES`] bytes. Empty: unconfigured.
    pub fn from_key(key: &str, audience: &str) -> Result<CustomerAuth, String> {
        let key = key.trim();
        if key.is_empty() {
            return Ok(CustomerAuth::Unconfigured);
        }
        let (key, algorithm) = if key.starts_with("-----BEGIN") {
            match DecodingKey::from_ed_pem(key.as_bytes()) {
                Ok(ed) => (ed, Algorithm::EdDSA),
                Err(_) => (
                    DecodingKey::from_rsa_pem(key.as_bytes()).map_err(|e| format!("jwt_verification_key: not an Ed25519 or RSA public key: {e}"))?,
                    Algorithm::RS256,
                ),
            }
        } else if key.len() < MIN_SECRET_BYTES {
            return Err(format!("jwt_verification_key: an HS256 secret needs at least {MIN_SECRET_BYTES} bytes"));
        } else {
            (DecodingKey::from_secret(key.as_bytes()).map_err(|e| format!("jwt_verification_key: {e}"))?, Algorithm::HS256)
        };
        Ok(CustomerAuth::Jwt { key, algorithm, audience: audience.to_string() })
    }

    /// The user id a token stands for, if it is valid at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<u64, ApiError> {
        let CustomerAuth::Jwt { key, algorithm, audience } = self else {
            return Err(invalid_token("no jwt_verification_key is configured"));
        };
        let mut validation = Validation::new(*algorithm);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        // `exp` is checked below against the service's clock.
        validation.validate_exp = false;
        let claims = decode::<Claims>(token, key, &validation).map_err(|e| invalid_token(&e.to_string()))?.claims;
        if claims.exp.saturating_add(LEEWAY_SECONDS).saturating_mul(1000) <= now_ms {
            return Err(invalid_token("the token has expired"));
        }
        match claims.sub.parse::<u64>() {
            Ok(user_id) if user_id >= 1 && user_id <= i64::MAX as u64 => Ok(user_id),
            _ => Err(invalid_token("sub must be a user id (a positive integer)")),
        }
    }

    /// Who sent `request`: the admin token first, then a customer token.
    pub fn caller(&self, request: &ApiRequest, admin_token: &str, now_ms: u64) -> Result<Caller, ApiError> {
        let Some(authorization) = request.header("authorization") else {
            if matches!(self, CustomerAuth::Off) {
                return Ok(Caller::Unverified);
            }
            return Err(ApiError::new(401, "unauthorized", "this route needs a bearer token"));
        };
        let token = authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer ")).unwrap_or("");
        if token.is_empty() {
            return Err(invalid_token("the Authorization header is not a bearer token"));
        }
        if !admin_token.is_empty() && constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
            return Ok(Caller::Admin);
        }
        self.verify(token, now_ms).map(|user_id| Caller::Customer { user_id })
    }
}

impl std::fmt::Debug for CustomerAuth {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CustomerAuth::Jwt { algorithm, audience, .. } => write!(f, "Jwt({algorithm:?}, aud {audience})"),
            CustomerAuth::Unconfigured => f.write_str("Unconfigured"),
            CustomerAuth::Off => f.write_str("Off"),
        }
    }
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::new(401, "invalid_token", format!("the bearer token is not valid: {why}"))
}

impl Caller {
    /// The user a customer acts as, checked against the one a request names
    /// (`user_id` in a body or query): a customer may only name itself.
    pub fn user_id(self, named: Option<u64>, field: &str) -> Result<Option<u64>, ApiError> {
        match (self, named) {
            (Caller::Customer { user_id }, Some(named)) if named != user_id => {
                Err(ApiError::new(403, "forbidden", format!("{field} must be the user of the bearer token")).with_field(field))
            }
            (Caller::Customer { user_id }, _) => Ok(Some(user_id)),
            (_, named) => Ok(named),
        }
    }

    /// Whether the caller may see and change an order of `owner`.
    pub fn may_access(self, owner: u64) -> bool {
        match self {
            Caller::Customer { user_id } => user_id == owner,
            Caller::Admin | Caller::Unverified => true,
        }
    }
}
