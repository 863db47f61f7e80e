//! The importer's only calls into the filter's core: its XML tree, its
//! condition parser, its configuration loader (the code `on_configure` runs
//! in Envoy) and its catalog of variables. Kept in one place so that a move
//! of the core's modules changes this file only.

pub use oauthv2info_core::Element;

use oauthv2info_core::catalog;
use oauthv2info_core::{parse_config, Condition, FilterConfig};

/// Parses one XML document into the core's element tree.
pub fn parse_xml(text: &str) -> Result<Element, String> {
    oauthv2info_core::parse_xml(text)
}

/// The variables a condition reads, or the parser's problem.
pub fn condition_variables(text: &str) -> Result<Vec<String>, String> {
    Condition::parse(text)
        .map(|c| c.variables().to_vec())
        .map_err(|e| format!("at character {}: {}", e.at, e.problem))
}

/// What the filter makes of a plugin configuration.
pub struct Loaded {
    /// Load-time warnings, as Envoy logs them.
    pub warnings: Vec<String>,
    /// Every variable (or family, with `{name}`) the configuration's
    /// policies can set.
    pub sets: Vec<String>,
    pub config: FilterConfig,
}

/// Loads a plugin configuration with the filter's own code: the line Envoy
/// would log when it refuses it.
pub fn load(plugin: &serde_json::Value) -> Result<Loaded, String> {
    let config = parse_config(plugin.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let sets = config
        .policies
        .iter()
        .flat_map(catalog::variables)
        .map(|v| v.name)
        .collect();
    Ok(Loaded {
        warnings: config.warnings.clone(),
        sets,
        config,
    })
}

/// The variables VerifyAccessToken sets without a prefix (`access_token`,
/// `client_id`..., and the family `accesstoken.{name}`).
pub fn verify_variables() -> Vec<String> {
    let probe = serde_json::json!({"policies": [
        "<OAuthV2 name=\"probe\"><Operation>VerifyAccessToken</Operation></OAuthV2>"]});
    load(&probe).map(|l| l.sets).unwrap_or_default()
}
