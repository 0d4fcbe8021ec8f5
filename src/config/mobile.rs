//! Settings of the mobile push channels, `fcm` and `apns`. Their key files are read and
//! checked at start, so a wrong path or a damaged key stops the worker with exit code 2
//! instead of failing every send; no error quotes a key.

use super::{ConfigError, Environment, bad};
use crate::delivery::apns::{self, ApnsSettings};
use crate::delivery::fcm::{self, FcmSettings, ServiceAccount};
use crate::delivery::jwt::JwtKey;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

/// How long FCM, its token endpoint and APNs have to answer.
pub const MOBILE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Args)]
#[command(next_help_heading = super::heading::DELIVERY)]
pub struct RawMobile {
    /// A Firebase service account's JSON key file (turns channel `fcm` on).
    #[arg(long, env = "FCM_CREDENTIALS_FILE", global = true)]
    pub fcm_credentials_file: Option<String>,
    /// FCM's API.
    #[arg(long, env = "FCM_BASE_URL", default_value = fcm::DEFAULT_BASE_URL, global = true)]
    pub fcm_base_url: String,
    /// APNs auth key, the .p8 file (with APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC: turns channel `apns` on).
    #[arg(long, env = "APNS_KEY_FILE", global = true)]
    pub apns_key_file: Option<String>,
    /// The APNs key's id (10 characters).
    #[arg(long, env = "APNS_KEY_ID", global = true)]
    pub apns_key_id: Option<String>,
    /// The Apple developer team id (10 characters).
    #[arg(long, env = "APNS_TEAM_ID", global = true)]
    pub apns_team_id: Option<String>,
    /// The app's bundle id.
    #[arg(long, env = "APNS_TOPIC", global = true)]
    pub apns_topic: Option<String>,
    /// APNs' API [default: https://api.push.apple.com in production, https://api.sandbox.push.apple.com in development].
    #[arg(long, env = "APNS_BASE_URL", global = true)]
    pub apns_base_url: Option<String>,
}

impl Default for RawMobile {
    /// The documented defaults: neither channel on.
    fn default() -> RawMobile {
        RawMobile {
            fcm_credentials_file: None,
            fcm_base_url: fcm::DEFAULT_BASE_URL.into(),
            apns_key_file: None,
            apns_key_id: None,
            apns_team_id: None,
            apns_topic: None,
            apns_base_url: None,
        }
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// Channel `fcm`: on when `FCM_CREDENTIALS_FILE` is set.
pub fn parse_fcm(raw: &RawMobile, environment: Environment) -> Result<Option<FcmSettings>, ConfigError> {
    let Some(path) = given(&raw.fcm_credentials_file) else {
        return Ok(None);
    };
    let example = "/run/secrets/firebase-service-account.json";
    let json = std::fs::read_to_string(path).map_err(|error| {
        bad(
            "FCM_CREDENTIALS_FILE",
            path,
            format!("cannot be read: {error}"),
            example,
        )
    })?;
    let account = ServiceAccount::parse(&json)
        .map_err(|problem| bad("FCM_CREDENTIALS_FILE", path, problem, example))?;
    if !allowed(&account.token_uri, environment) {
        return Err(bad(
            "FCM_CREDENTIALS_FILE",
            path,
            "has a token_uri that is not https:// (http:// is allowed only in development)",
            example,
        ));
    }
    Ok(Some(FcmSettings {
        account,
        base_url: base_url(
            "FCM_BASE_URL",
            &raw.fcm_base_url,
            environment,
            fcm::DEFAULT_BASE_URL,
        )?,
        timeout: MOBILE_TIMEOUT,
    }))
}

/// Channel `apns`: on when its four variables are set; some of them only is an error.
pub fn parse_apns(raw: &RawMobile, environment: Environment) -> Result<Option<ApnsSettings>, ConfigError> {
    let parts = [
        ("APNS_KEY_FILE", given(&raw.apns_key_file)),
        ("APNS_KEY_ID", given(&raw.apns_key_id)),
        ("APNS_TEAM_ID", given(&raw.apns_team_id)),
        ("APNS_TOPIC", given(&raw.apns_topic)),
    ];
    let [
        (_, Some(path)),
        (_, Some(key_id)),
        (_, Some(team_id)),
        (_, Some(topic)),
    ] = parts
    else {
        let missing: Vec<&str> = parts
            .iter()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect();
        if missing.len() == parts.len() {
            return Ok(None);
        }
        return Err(ConfigError {
            variable: missing[0],
            value: None,
            problem: format!(
                "missing {}: APNS_KEY_FILE, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC together turn channel apns on",
                missing.join(", ")
            ),
            example: "…",
        });
    };
    let key = std::fs::read_to_string(path)
        .map_err(|error| error.to_string())
        .and_then(|pem| JwtKey::es256_from_pem(&pem))
        .map_err(|problem| {
            bad(
                "APNS_KEY_FILE",
                path,
                problem,
                "/run/secrets/AuthKey_ABC123DEFG.p8",
            )
        })?;
    let apple_id = |text: &str| text.len() == 10 && text.bytes().all(|b| b.is_ascii_alphanumeric());
    if !apple_id(key_id) {
        return Err(bad(
            "APNS_KEY_ID",
            key_id,
            "must be the key's 10-character id",
            "ABC123DEFG",
        ));
    }
    if !apple_id(team_id) {
        return Err(bad(
            "APNS_TEAM_ID",
            team_id,
            "must be the team's 10-character id",
            "DEF123GHIJ",
        ));
    }
    // A header value and a bundle id: letters, digits, . - and _ only.
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(bad(
            "APNS_TOPIC",
            topic,
            "must be the app's bundle id",
            "com.example.app",
        ));
    }
    let default = match environment {
        Environment::Production => apns::PRODUCTION_BASE_URL,
        Environment::Development => apns::SANDBOX_BASE_URL,
    };
    let base = given(&raw.apns_base_url).unwrap_or(default);
    Ok(Some(ApnsSettings {
        key: Arc::new(key),
        key_id: key_id.to_owned(),
        team_id: team_id.to_owned(),
        topic: topic.to_owned(),
        base_url: base_url("APNS_BASE_URL", base, environment, default)?,
        timeout: MOBILE_TIMEOUT,
        token_renewal: apns::TOKEN_RENEWAL,
    }))
}

/// `https://`, or `http://` in development (a local server).
fn allowed(url: &url::Url, environment: Environment) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && environment == Environment::Development)
}

fn base_url(
    variable: &'static str,
    value: &str,
    environment: Environment,
    example: &'static str,
) -> Result<url::Url, ConfigError> {
    match url::Url::parse(value.trim()) {
        Ok(url) if url.host().is_some() && allowed(&url, environment) => Ok(url),
        Ok(url) if url.scheme() == "http" => {
            Err(bad(variable, value, "must be https:// in production", example))
        }
        _ => Err(bad(variable, value, "must be an https:// URL", example)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_channel_is_on_by_default() {
        let raw = RawMobile::default();
        assert!(parse_fcm(&raw, Environment::Production).unwrap().is_none());
        assert!(parse_apns(&raw, Environment::Production).unwrap().is_none());
    }

    #[test]
    fn some_apns_variables_but_not_all_name_the_missing_ones() {
        let raw = RawMobile {
            apns_key_id: Some("ABC123DEFG".into()),
            apns_topic: Some("com.example.app".into()),
            ..RawMobile::default()
        };
        let error = parse_apns(&raw, Environment::Production).unwrap_err();
        assert_eq!(error.variable, "APNS_KEY_FILE");
        assert!(error.problem.contains("APNS_KEY_FILE, APNS_TEAM_ID"), "{error}");
    }

    #[test]
    fn a_missing_credentials_file_is_an_error_naming_the_variable() {
        let raw = RawMobile {
            fcm_credentials_file: Some("/nonexistent/service-account.json".into()),
            ..RawMobile::default()
        };
        let error = parse_fcm(&raw, Environment::Development).unwrap_err();
        assert_eq!(error.variable, "FCM_CREDENTIALS_FILE");
        assert!(error.problem.contains("cannot be read"), "{error}");
    }
}
