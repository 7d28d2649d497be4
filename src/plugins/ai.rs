//! Kong's AI plugins: `ai-proxy`, `ai-prompt-decorator`, `ai-prompt-guard`,
//! `ai-prompt-template`, `ai-request-transformer` and `ai-response-transformer`. Not served
//! yet: their configs are checked against Kong's schemas, and the routes they apply to are
//! closed.

use std::sync::Arc;

use serde::Deserialize;

use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// A plugin's `config`.
#[derive(Debug, Deserialize)]
pub struct Config(serde::de::IgnoredAny);

impl Validate for Config {
    fn validate(&self, _checks: &mut Checks) {}
}

/// `ai-proxy` (PRIORITY 770).
pub struct AiProxy;

impl PluginSpec for AiProxy {
    const NAME: &'static str = "ai-proxy";
    const PRIORITY: i32 = 770;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `ai-prompt-decorator` (PRIORITY 772).
pub struct AiPromptDecorator;

impl PluginSpec for AiPromptDecorator {
    const NAME: &'static str = "ai-prompt-decorator";
    const PRIORITY: i32 = 772;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `ai-prompt-guard` (PRIORITY 771).
pub struct AiPromptGuard;

impl PluginSpec for AiPromptGuard {
    const NAME: &'static str = "ai-prompt-guard";
    const PRIORITY: i32 = 771;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `ai-prompt-template` (PRIORITY 773).
pub struct AiPromptTemplate;

impl PluginSpec for AiPromptTemplate {
    const NAME: &'static str = "ai-prompt-template";
    const PRIORITY: i32 = 773;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `ai-request-transformer` (PRIORITY 777).
pub struct AiRequestTransformer;

impl PluginSpec for AiRequestTransformer {
    const NAME: &'static str = "ai-request-transformer";
    const PRIORITY: i32 = 777;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// `ai-response-transformer` (PRIORITY 768).
pub struct AiResponseTransformer;

impl PluginSpec for AiResponseTransformer {
    const NAME: &'static str = "ai-response-transformer";
    const PRIORITY: i32 = 768;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}
