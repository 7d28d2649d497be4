//! Kong's AI plugins. In Kong:
//! - `ai-proxy` turns a route into a client of an LLM provider: it translates requests and
//!   answers between the OpenAI-style format (or a provider's native one) and the provider's
//!   own, adds its credentials, and logs token usage;
//! - `ai-prompt-decorator` adds chat messages before and after the client's;
//! - `ai-prompt-guard` refuses chat requests whose messages match deny patterns or miss the
//!   allow patterns;
//! - `ai-prompt-template` fills named prompt templates (`{template://name}`) with the
//!   request's values;
//! - `ai-request-transformer` and `ai-response-transformer` have an LLM rewrite the request
//!   before it goes upstream, or the answer before it goes back.
//!
//! Not served yet: their configs are checked against Kong's schemas, and the routes they
//! apply to are closed. The LLM record (`kong/llm/schemas/init.lua`: route type, auth, model,
//! logging) is `ai-proxy`'s config itself and the transformers' `llm`: its types and checks
//! are shared.

use std::sync::Arc;

use serde::Deserialize;

use super::schema::defaults::yes;
use super::schema::join;
use super::schema::typedefs::{check_host, check_port, check_url, non_empty_fields};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

// === The LLM record (`kong/llm/schemas/init.lua`) ===

/// An LLM client's settings: the transformers' `llm` (`ai-proxy` has the same fields at the
/// top of its config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Llm {
    pub route_type: RouteType,
    pub auth: Option<Auth>,
    pub model: Model,
    #[serde(default)]
    pub logging: Logging,
}

/// The operation the route performs; `preserve` passes requests through untranslated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RouteType {
    #[serde(rename = "llm/v1/chat")]
    Chat,
    #[serde(rename = "llm/v1/completions")]
    Completions,
    #[serde(rename = "preserve")]
    Preserve,
}

/// The provider's credentials: a header, a query or body parameter, a GCP service account or
/// AWS keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Auth {
    pub header_name: Option<String>,
    pub header_value: Option<String>,
    pub param_name: Option<String>,
    pub param_value: Option<String>,
    pub param_location: Option<ParamLocation>,
    #[serde(default)]
    pub gcp_use_service_account: bool,
    pub gcp_service_account_json: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    /// The client's own header or parameter of the same name wins.
    #[serde(default)]
    pub allow_override: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamLocation {
    Query,
    Body,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub provider: Provider,
    pub name: Option<String>,
    pub options: Option<ModelOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Azure,
    Anthropic,
    Cohere,
    Mistral,
    Llama2,
    Gemini,
    Bedrock,
    Huggingface,
}

/// The model's tuning and where it is served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelOptions {
    pub max_tokens: Option<i64>,
    /// Cost per million prompt tokens.
    pub input_cost: Option<f64>,
    /// Cost per million answer tokens.
    pub output_cost: Option<f64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub anthropic_version: Option<String>,
    pub azure_instance: Option<String>,
    #[serde(default = "default_azure_api_version")]
    pub azure_api_version: String,
    pub azure_deployment_id: Option<String>,
    pub llama2_format: Option<Llama2Format>,
    pub mistral_format: Option<MistralFormat>,
    pub upstream_url: Option<String>,
    /// Deprecated: `upstream_url` replaces it.
    pub upstream_path: Option<String>,
    pub gemini: Option<GeminiOptions>,
    pub bedrock: Option<BedrockOptions>,
    pub huggingface: Option<HuggingfaceOptions>,
}

fn default_azure_api_version() -> String {
    "2023-05-15".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Llama2Format {
    Raw,
    Openai,
    Ollama,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MistralFormat {
    Openai,
    Ollama,
}

/// Gemini on Vertex AI: all three or none.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GeminiOptions {
    pub api_endpoint: Option<String>,
    pub project_id: Option<String>,
    pub location_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BedrockOptions {
    pub aws_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HuggingfaceOptions {
    pub use_cache: Option<bool>,
    pub wait_for_model: Option<bool>,
}

/// What goes into the log plugins' output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Logging {
    #[serde(default)]
    pub log_statistics: bool,
    #[serde(default)]
    pub log_payloads: bool,
}

impl Llm {
    /// The record's rules, with `at` its path inside `config`.
    pub fn check(&self, c: &mut Checks, at: &str) {
        check_llm(
            c,
            at,
            self.route_type,
            self.auth.as_ref(),
            &self.model,
            &self.logging,
        );
    }
}

impl Auth {
    fn check(&self, c: &mut Checks, at: &str) {
        non_empty_fields(
            c,
            at,
            &[
                ("header_name", self.header_name.as_deref()),
                ("header_value", self.header_value.as_deref()),
                ("param_name", self.param_name.as_deref()),
                ("param_value", self.param_value.as_deref()),
                (
                    "gcp_service_account_json",
                    self.gcp_service_account_json.as_deref(),
                ),
                ("aws_access_key_id", self.aws_access_key_id.as_deref()),
                (
                    "aws_secret_access_key",
                    self.aws_secret_access_key.as_deref(),
                ),
            ],
        );
    }
}

impl ModelOptions {
    fn check(&self, c: &mut Checks, at: &str) {
        let f = |name: &str| join(at, name);
        for (name, cost) in [
            ("input_cost", self.input_cost),
            ("output_cost", self.output_cost),
        ] {
            if let Some(cost) = cost {
                c.greater_than(&f(name), cost, 0.0);
            }
        }
        if let Some(t) = self.temperature {
            c.between(&f("temperature"), t, 0.0, 5.0);
        }
        if let Some(p) = self.top_p {
            c.between(&f("top_p"), p, 0.0, 1.0);
        }
        if let Some(k) = self.top_k {
            c.between(&f("top_k"), k, 0, 500);
        }
        non_empty_fields(
            c,
            at,
            &[
                ("anthropic_version", self.anthropic_version.as_deref()),
                ("azure_instance", self.azure_instance.as_deref()),
                ("azure_api_version", Some(&self.azure_api_version)),
                ("azure_deployment_id", self.azure_deployment_id.as_deref()),
                ("upstream_path", self.upstream_path.as_deref()),
            ],
        );
        if let Some(url) = &self.upstream_url {
            check_url(c, &f("upstream_url"), url);
        }
        if let Some(g) = &self.gemini {
            let fields = [
                ("api_endpoint", g.api_endpoint.as_deref()),
                ("project_id", g.project_id.as_deref()),
                ("location_id", g.location_id.as_deref()),
            ];
            non_empty_fields(c, &f("gemini"), &fields);
            c.mutually_required_in(&f("gemini"), &fields);
        }
        if let Some(b) = &self.bedrock {
            non_empty_fields(c, &f("bedrock"), &[("aws_region", b.aws_region.as_deref())]);
        }
    }
}

/// The LLM record's fields and entity checks, with `at` the record's path inside `config`
/// (empty for `ai-proxy`, whose config is the record). Kong names fields in these messages
/// relative to the record.
fn check_llm(
    c: &mut Checks,
    at: &str,
    route_type: RouteType,
    auth: Option<&Auth>,
    model: &Model,
    logging: &Logging,
) {
    let f = |name: &str| join(at, name);
    if let Some(auth) = auth {
        auth.check(c, &f("auth"));
    }
    non_empty_fields(c, &f("model"), &[("name", model.name.as_deref())]);
    if let Some(options) = &model.options {
        options.check(c, &f("model.options"));
    }

    // Kong's `eq = false` also fails on a missing `auth` record: these providers need one.
    let provider = model.provider;
    if matches!(provider, Provider::Bedrock | Provider::Gemini)
        && auth.is_none_or(|a| a.allow_override)
    {
        c.error(
            &f("auth.allow_override"),
            "bedrock and gemini only support auth.allow_override = false",
        );
    }
    let a = auth.cloned().unwrap_or_default();
    c.mutually_required_in(
        at,
        &[
            ("auth.header_name", a.header_name.as_deref()),
            ("auth.header_value", a.header_value.as_deref()),
        ],
    );
    c.mutually_required_in(
        at,
        &[
            ("auth.param_name", a.param_name.as_deref()),
            ("auth.param_value", a.param_value.as_deref()),
            ("auth.param_location", a.param_location.map(|_| "set")),
        ],
    );

    // `conditional_at_least_one_of`: what each provider cannot do without.
    let options = model.options.as_ref();
    let set = |v: Option<&String>| v.is_some_and(|s| !s.is_empty());
    let needs: [(Provider, &str, bool, &str); 7] = [
        (
            Provider::Llama2,
            "llama2_format",
            options.is_some_and(|o| o.llama2_format.is_some()),
            "for llama2 provider",
        ),
        (
            Provider::Mistral,
            "mistral_format",
            options.is_some_and(|o| o.mistral_format.is_some()),
            "for mistral provider",
        ),
        (
            Provider::Anthropic,
            "anthropic_version",
            set(options.and_then(|o| o.anthropic_version.as_ref())),
            "for anthropic provider",
        ),
        (
            Provider::Azure,
            "azure_instance",
            set(options.and_then(|o| o.azure_instance.as_ref())),
            "for azure provider",
        ),
        (
            Provider::Azure,
            "azure_api_version",
            set(options.map(|o| &o.azure_api_version)),
            "for azure provider",
        ),
        (
            Provider::Azure,
            "azure_deployment_id",
            set(options.and_then(|o| o.azure_deployment_id.as_ref())),
            "for azure provider",
        ),
        (
            Provider::Llama2,
            "upstream_url",
            set(options.and_then(|o| o.upstream_url.as_ref())),
            "for self-hosted providers/models",
        ),
    ];
    for (p, field, present, why) in needs {
        if p == provider && !present {
            c.error(
                &f(&format!("model.options.{field}")),
                format!("must set 'model.options.{field}' {why}"),
            );
        }
    }

    if logging.log_statistics
        && route_type == RouteType::Completions
        && provider == Provider::Anthropic
    {
        c.error(
            &f("logging.log_statistics"),
            "anthropic does not support statistics when route_type is llm/v1/completions",
        );
    }
}

/// The request and response format clients speak (`openai`, or a provider's native one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmFormat {
    #[default]
    Openai,
    Bedrock,
    Gemini,
}

fn default_max_request_body_size() -> i64 {
    8 * 1024
}

// === ai-proxy ===

/// `ai-proxy`'s `config` (Kong's `kong/plugins/ai-proxy/schema.lua`): the LLM record and
/// the proxy's own fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProxyConfig {
    pub route_type: RouteType,
    pub auth: Option<Auth>,
    pub model: Model,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub response_streaming: ResponseStreaming,
    /// Bytes of request body read for introspection.
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
    /// `X-Kong-LLM-Model` on answers.
    #[serde(default = "yes")]
    pub model_name_header: bool,
    #[serde(default)]
    pub llm_format: LlmFormat,
}

/// Whether answers may (`allow`), may not (`deny`) or must (`always`) stream as server-sent
/// events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseStreaming {
    #[default]
    Allow,
    Deny,
    Always,
}

impl Validate for ProxyConfig {
    fn validate(&self, c: &mut Checks) {
        check_llm(
            c,
            "",
            self.route_type,
            self.auth.as_ref(),
            &self.model,
            &self.logging,
        );
        c.greater_than("max_request_body_size", self.max_request_body_size, 0);
        // The plugin's entity checks on native formats.
        let format = self.llm_format;
        if matches!(format, LlmFormat::Bedrock | LlmFormat::Gemini)
            && self.route_type != RouteType::Chat
        {
            c.error(
                "route_type",
                "native provider options in llm_format can only be used with the 'llm/v1/chat' route_type",
            );
        }
        for (native, provider, name) in [
            (LlmFormat::Bedrock, Provider::Bedrock, "bedrock"),
            (LlmFormat::Gemini, Provider::Gemini, "gemini"),
        ] {
            if format == native && self.model.provider != provider {
                c.error(
                    "model.provider",
                    format!(
                        "native llm_format '{name}' can only be used with the '{name}' model.provider"
                    ),
                );
            }
        }
    }
}

/// `ai-proxy` (PRIORITY 770).
pub struct AiProxy;

impl PluginSpec for AiProxy {
    const NAME: &'static str = "ai-proxy";
    const PRIORITY: i32 = 770;
    const KIND: Kind = Kind::Acts;
    type Config = ProxyConfig;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

// === ai-prompt-decorator ===

/// `ai-prompt-decorator`'s `config` (Kong's `kong/plugins/ai-prompt-decorator/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoratorConfig {
    pub prompts: Option<Prompts>,
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
    #[serde(default)]
    pub llm_format: LlmFormat,
}

/// Chat messages added before and after the client's, in this order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Prompts {
    pub prepend: Option<Vec<Message>>,
    pub append: Option<Vec<Message>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    System,
    Assistant,
    User,
}

/// Kong's `len_min` and `len_max` on a string (bytes, as Lua's `#` counts).
fn check_len(c: &mut Checks, field: &str, value: &str, min: usize, max: usize) {
    if value.len() < min {
        c.error(field, format!("length must be at least {min}"));
    } else if value.len() > max {
        c.error(field, format!("length must be at most {max}"));
    }
}

impl Validate for DecoratorConfig {
    fn validate(&self, c: &mut Checks) {
        let prompts = self.prompts.as_ref();
        let lists = [
            ("prompts.prepend", prompts.and_then(|p| p.prepend.as_ref())),
            ("prompts.append", prompts.and_then(|p| p.append.as_ref())),
        ];
        for (field, list) in lists {
            let Some(list) = list else { continue };
            if list.len() > 15 {
                c.error(field, "length must be at most 15");
            }
            for (i, m) in list.iter().enumerate() {
                check_len(c, &format!("{field}[{i}].content"), &m.content, 1, 500);
            }
        }
        c.greater_than("max_request_body_size", self.max_request_body_size, 0);
        c.at_least_one_of(&lists.map(|(f, l)| (f, l.is_some_and(|l| !l.is_empty()))));
    }
}

/// `ai-prompt-decorator` (PRIORITY 772).
pub struct AiPromptDecorator;

impl PluginSpec for AiPromptDecorator {
    const NAME: &'static str = "ai-prompt-decorator";
    const PRIORITY: i32 = 772;
    const KIND: Kind = Kind::Acts;
    type Config = DecoratorConfig;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

// === ai-prompt-guard ===

/// `ai-prompt-guard`'s `config` (Kong's `kong/plugins/ai-prompt-guard/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GuardConfig {
    /// Regexes: a user message must match one of them.
    pub allow_patterns: Option<Vec<String>>,
    /// Regexes: no user message may match any of them.
    pub deny_patterns: Option<Vec<String>>,
    /// Only the last message is checked.
    #[serde(default)]
    pub allow_all_conversation_history: bool,
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
    /// Messages of every role are checked, not only the user's.
    #[serde(default)]
    pub match_all_roles: bool,
    #[serde(default)]
    pub llm_format: LlmFormat,
}

impl Validate for GuardConfig {
    fn validate(&self, c: &mut Checks) {
        let lists = [
            ("allow_patterns", self.allow_patterns.as_ref()),
            ("deny_patterns", self.deny_patterns.as_ref()),
        ];
        for (field, list) in lists {
            let Some(list) = list else { continue };
            if list.len() > 10 {
                c.error(field, "length must be at most 10");
            }
            for (i, p) in list.iter().enumerate() {
                check_len(c, &format!("{field}[{i}]"), p, 1, 500);
            }
        }
        c.greater_than("max_request_body_size", self.max_request_body_size, 0);
        c.at_least_one_of(&lists.map(|(f, l)| (f, l.is_some_and(|l| !l.is_empty()))));
        if self.match_all_roles && self.allow_all_conversation_history {
            c.error(
                "allow_all_conversation_history",
                "value must be false (failed conditional validation given value of field 'config.match_all_roles')",
            );
        }
    }
}

/// `ai-prompt-guard` (PRIORITY 771).
pub struct AiPromptGuard;

impl PluginSpec for AiPromptGuard {
    const NAME: &'static str = "ai-prompt-guard";
    const PRIORITY: i32 = 771;
    const KIND: Kind = Kind::Acts;
    type Config = GuardConfig;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

// === ai-prompt-template ===

/// `ai-prompt-template`'s `config` (Kong's `kong/plugins/ai-prompt-template/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TemplateConfig {
    pub templates: Vec<Template>,
    /// Requests that name no template pass unchanged.
    #[serde(default = "yes")]
    pub allow_untemplated_requests: bool,
    #[serde(default)]
    pub log_original_request: bool,
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
}

/// A template requests call as `{template://name}`, with `{{placeholders}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Template {
    pub name: String,
    pub template: String,
}

impl Validate for TemplateConfig {
    fn validate(&self, c: &mut Checks) {
        for (i, t) in self.templates.iter().enumerate() {
            non_empty_fields(
                c,
                &format!("templates[{i}]"),
                &[("name", Some(&t.name)), ("template", Some(&t.template))],
            );
        }
        c.greater_than("max_request_body_size", self.max_request_body_size, 0);
    }
}

/// `ai-prompt-template` (PRIORITY 773).
pub struct AiPromptTemplate;

impl PluginSpec for AiPromptTemplate {
    const NAME: &'static str = "ai-prompt-template";
    const PRIORITY: i32 = 773;
    const KIND: Kind = Kind::Acts;
    type Config = TemplateConfig;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

// === ai-request-transformer and ai-response-transformer ===

/// `ai-request-transformer`'s `config` (Kong's
/// `kong/plugins/ai-request-transformer/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestTransformerConfig {
    /// What the LLM is asked to do with the request body.
    pub prompt: String,
    /// A regex whose first match in the LLM's answer becomes the body.
    pub transformation_extract_pattern: Option<String>,
    /// Milliseconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout: i64,
    #[serde(default = "yes")]
    pub https_verify: bool,
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
    pub http_proxy_host: Option<String>,
    pub http_proxy_port: Option<i64>,
    pub https_proxy_host: Option<String>,
    pub https_proxy_port: Option<i64>,
    pub llm: Llm,
}

/// `ai-response-transformer`'s `config` (Kong's
/// `kong/plugins/ai-response-transformer/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseTransformerConfig {
    /// What the LLM is asked to do with the upstream's answer.
    pub prompt: String,
    pub transformation_extract_pattern: Option<String>,
    /// The LLM answers with the status, headers and body to send back (as JSON).
    #[serde(default)]
    pub parse_llm_response_json_instructions: bool,
    #[serde(default = "default_http_timeout")]
    pub http_timeout: i64,
    #[serde(default = "yes")]
    pub https_verify: bool,
    #[serde(default = "default_max_request_body_size")]
    pub max_request_body_size: i64,
    pub http_proxy_host: Option<String>,
    pub http_proxy_port: Option<i64>,
    pub https_proxy_host: Option<String>,
    pub https_proxy_port: Option<i64>,
    pub llm: Llm,
}

fn default_http_timeout() -> i64 {
    60000
}

/// The fields both transformers have, for their checks.
struct Transformer<'a> {
    prompt: &'a str,
    pattern: Option<&'a str>,
    max_request_body_size: i64,
    proxies: [(&'static str, Option<&'a str>, &'static str, Option<i64>); 2],
    llm: &'a Llm,
}

impl Transformer<'_> {
    fn check(&self, c: &mut Checks) {
        non_empty_fields(
            c,
            "",
            &[
                ("prompt", Some(self.prompt)),
                ("transformation_extract_pattern", self.pattern),
            ],
        );
        c.greater_than("max_request_body_size", self.max_request_body_size, 0);
        for (host_field, host, port_field, port) in self.proxies {
            if let Some(host) = host {
                check_host(c, host_field, host);
            }
            if let Some(port) = port {
                check_port(c, port_field, port);
            }
            c.mutually_required(&[(host_field, host.is_some()), (port_field, port.is_some())]);
        }
        self.llm.check(c, "llm");
        if self.llm.route_type != RouteType::Chat {
            c.error(
                "llm.route_type",
                "'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins",
            );
        }
    }
}

/// The `Transformer` of either transformer config: both name these fields alike.
macro_rules! transformer {
    ($config:expr) => {
        Transformer {
            prompt: &$config.prompt,
            pattern: $config.transformation_extract_pattern.as_deref(),
            max_request_body_size: $config.max_request_body_size,
            proxies: [
                (
                    "http_proxy_host",
                    $config.http_proxy_host.as_deref(),
                    "http_proxy_port",
                    $config.http_proxy_port,
                ),
                (
                    "https_proxy_host",
                    $config.https_proxy_host.as_deref(),
                    "https_proxy_port",
                    $config.https_proxy_port,
                ),
            ],
            llm: &$config.llm,
        }
    };
}

impl Validate for RequestTransformerConfig {
    fn validate(&self, c: &mut Checks) {
        transformer!(self).check(c);
    }
}

impl Validate for ResponseTransformerConfig {
    fn validate(&self, c: &mut Checks) {
        transformer!(self).check(c);
    }
}

/// `ai-request-transformer` (PRIORITY 777).
pub struct AiRequestTransformer;

impl PluginSpec for AiRequestTransformer {
    const NAME: &'static str = "ai-request-transformer";
    const PRIORITY: i32 = 777;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
    type Config = RequestTransformerConfig;

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
    type Config = ResponseTransformerConfig;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    const OPENAI: &str = "route_type: llm/v1/chat\nauth: {header_name: Authorization, header_value: Bearer sk}\nmodel: {provider: openai, name: gpt-4o}";

    #[test]
    fn proxy_defaults() {
        let c: ProxyConfig = parse(OPENAI).unwrap();
        assert_eq!(c.route_type, RouteType::Chat);
        assert_eq!(c.model.provider, Provider::Openai);
        assert_eq!(c.logging, Logging::default());
        assert_eq!(c.response_streaming, ResponseStreaming::Allow);
        assert_eq!(c.max_request_body_size, 8192);
        assert!(c.model_name_header);
        assert_eq!(c.llm_format, LlmFormat::Openai);
        let auth = c.auth.unwrap();
        assert!(!auth.allow_override && !auth.gcp_use_service_account);
        let errs = parse::<ProxyConfig>("{}").unwrap_err();
        assert_eq!(errs, [": missing field `route_type`"]);
        let errs = parse::<ProxyConfig>("route_type: preserve\nmodel: {name: x}").unwrap_err();
        assert_eq!(errs, ["model: missing field `provider`"]);
    }

    #[test]
    fn proxy_every_field() {
        let c: ProxyConfig = parse(
            r#"
route_type: llm/v1/chat
auth:
  header_name: api-key
  header_value: "{vault://env/azure-key}"
  allow_override: true
model:
  provider: azure
  name: gpt-35
  options:
    max_tokens: 512
    input_cost: 1.5
    output_cost: 2
    temperature: 1.0
    top_p: 0.9
    top_k: 40
    azure_instance: my-instance
    azure_api_version: "2024-02-01"
    azure_deployment_id: gpt-35-prod
    upstream_url: https://my-instance.openai.azure.com/openai/deployments/x/chat/completions
    upstream_path: /v1/chat
    gemini: {api_endpoint: us-central1-aiplatform.googleapis.com, project_id: p, location_id: us-central1}
    bedrock: {aws_region: eu-west-1}
    huggingface: {use_cache: true, wait_for_model: false}
logging: {log_statistics: true, log_payloads: true}
response_streaming: always
max_request_body_size: 1048576
model_name_header: false
llm_format: openai
"#,
        )
        .unwrap();
        let o = c.model.options.as_ref().unwrap();
        assert_eq!(o.azure_api_version, "2024-02-01");
        assert_eq!(o.top_k, Some(40));
        assert_eq!(o.huggingface.as_ref().unwrap().use_cache, Some(true));
        assert_eq!(c.response_streaming, ResponseStreaming::Always);
        assert!(c.logging.log_payloads);
        // Options written without the API version get Kong's.
        let c: ProxyConfig = parse(
            "route_type: llm/v1/completions\nmodel: {provider: azure, options: {azure_instance: i, azure_deployment_id: d}}",
        )
        .unwrap();
        assert_eq!(c.model.options.unwrap().azure_api_version, "2023-05-15");
    }

    #[test]
    fn llm_rules() {
        let errs = parse::<ProxyConfig>(
            r#"
route_type: llm/v1/completions
auth: {header_name: Authorization, param_name: key, param_location: query, aws_access_key_id: ""}
model:
  provider: anthropic
  name: ""
  options: {input_cost: 0, temperature: 6, top_p: 2, top_k: 501, upstream_url: api.anthropic.com, gemini: {project_id: p}}
logging: {log_statistics: true}
max_request_body_size: 0
"#,
        )
        .unwrap_err();
        let want = [
            "auth.aws_access_key_id: length must be at least 1",
            "model.name: length must be at least 1",
            "model.options.input_cost: value must be greater than 0",
            "model.options.temperature: value should be between 0 and 5",
            "model.options.top_p: value should be between 0 and 1",
            "model.options.top_k: value should be between 0 and 500",
            "model.options.upstream_url: missing host in url",
            "model.options.gemini.api_endpoint: all or none of these fields must be set: 'api_endpoint', 'project_id', 'location_id'",
            "model.options.gemini.location_id: all or none of these fields must be set: 'api_endpoint', 'project_id', 'location_id'",
            "auth.header_value: all or none of these fields must be set: 'auth.header_name', 'auth.header_value'",
            "auth.param_value: all or none of these fields must be set: 'auth.param_name', 'auth.param_value', 'auth.param_location'",
            "model.options.anthropic_version: must set 'model.options.anthropic_version' for anthropic provider",
            "logging.log_statistics: anthropic does not support statistics when route_type is llm/v1/completions",
            "max_request_body_size: value must be greater than 0",
        ];
        assert_eq!(errs, want);

        let errs =
            parse::<ProxyConfig>("route_type: llm/v1/chat\nmodel: {provider: azure}").unwrap_err();
        assert_eq!(
            errs,
            [
                "model.options.azure_instance: must set 'model.options.azure_instance' for azure provider",
                "model.options.azure_api_version: must set 'model.options.azure_api_version' for azure provider",
                "model.options.azure_deployment_id: must set 'model.options.azure_deployment_id' for azure provider",
            ]
        );
        let errs =
            parse::<ProxyConfig>("route_type: llm/v1/chat\nmodel: {provider: llama2}").unwrap_err();
        assert_eq!(
            errs,
            [
                "model.options.llama2_format: must set 'model.options.llama2_format' for llama2 provider",
                "model.options.upstream_url: must set 'model.options.upstream_url' for self-hosted providers/models",
            ]
        );
        let errs = parse::<ProxyConfig>("route_type: llm/v1/chat\nmodel: {provider: mistral}")
            .unwrap_err();
        assert_eq!(
            errs,
            [
                "model.options.mistral_format: must set 'model.options.mistral_format' for mistral provider"
            ]
        );
        parse::<ProxyConfig>(
            "route_type: llm/v1/chat\nmodel: {provider: llama2, options: {llama2_format: ollama, upstream_url: http://ollama:11434/api/chat}}",
        )
        .unwrap();

        // Bedrock and Gemini: no client override, and (as in Kong) an `auth` record.
        for provider in ["bedrock", "gemini"] {
            let errs = parse::<ProxyConfig>(&format!(
                "route_type: llm/v1/chat\nmodel: {{provider: {provider}}}\nauth: {{allow_override: true}}"
            ))
            .unwrap_err();
            assert_eq!(
                errs,
                [
                    "auth.allow_override: bedrock and gemini only support auth.allow_override = false"
                ]
            );
            let errs = parse::<ProxyConfig>(&format!(
                "route_type: llm/v1/chat\nmodel: {{provider: {provider}}}"
            ))
            .unwrap_err();
            assert_eq!(
                errs,
                [
                    "auth.allow_override: bedrock and gemini only support auth.allow_override = false"
                ]
            );
        }
        let errs =
            parse::<ProxyConfig>("route_type: llm/v2/chat\nmodel: {provider: openai}").unwrap_err();
        assert_eq!(
            errs,
            ["route_type: `llm/v2/chat` is not one of: llm/v1/chat, llm/v1/completions, preserve"]
        );
        let errs =
            parse::<ProxyConfig>("route_type: preserve\nmodel: {provider: grok}").unwrap_err();
        assert!(
            errs[0].starts_with("model.provider: `grok` is not one of: openai, azure,"),
            "{errs:?}"
        );
        let errs = parse::<ProxyConfig>(&format!("{OPENAI}\nmodel_header: true")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("model_header: unknown field `model_header`"),
            "{errs:?}"
        );
    }

    #[test]
    fn proxy_native_formats() {
        let errs = parse::<ProxyConfig>(
            "route_type: llm/v1/completions\nauth: {param_name: key, param_value: v, param_location: query}\nmodel: {provider: openai}\nllm_format: gemini",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "route_type: native provider options in llm_format can only be used with the 'llm/v1/chat' route_type",
                "model.provider: native llm_format 'gemini' can only be used with the 'gemini' model.provider",
            ]
        );
        let errs = parse::<ProxyConfig>(
            "route_type: llm/v1/chat\nauth: {}\nmodel: {provider: gemini}\nllm_format: bedrock",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "model.provider: native llm_format 'bedrock' can only be used with the 'bedrock' model.provider"
            ]
        );
        parse::<ProxyConfig>(
            "route_type: llm/v1/chat\nauth: {aws_access_key_id: a, aws_secret_access_key: s}\nmodel: {provider: bedrock, options: {bedrock: {aws_region: us-east-1}}}\nllm_format: bedrock",
        )
        .unwrap();
    }

    #[test]
    fn decorator() {
        let c: DecoratorConfig = parse("prompts: {prepend: [{content: You are terse.}]}").unwrap();
        let p = c.prompts.as_ref().unwrap().prepend.as_ref().unwrap();
        assert_eq!(p[0].role, Role::System);
        assert_eq!(c.max_request_body_size, 8192);
        assert_eq!(c.llm_format, LlmFormat::Openai);
        let c: DecoratorConfig = parse(
            "prompts:\n  prepend: [{role: assistant, content: a}]\n  append: [{role: user, content: b}]\nmax_request_body_size: 100\nllm_format: bedrock",
        )
        .unwrap();
        assert_eq!(c.prompts.unwrap().append.unwrap()[0].role, Role::User);

        let errs = parse::<DecoratorConfig>("{}").unwrap_err();
        assert_eq!(
            errs,
            [
                ": at least one of these fields must be non-empty: 'config.prompts.prepend', 'config.prompts.append'"
            ]
        );
        let long = "x".repeat(501);
        let many = ["{content: x}"; 16].join(", ");
        let errs = parse::<DecoratorConfig>(&format!(
            "prompts: {{prepend: [{many}], append: [{{content: \"\"}}, {{content: {long}}}]}}\nmax_request_body_size: -1"
        ))
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "prompts.prepend: length must be at most 15",
                "prompts.append[0].content: length must be at least 1",
                "prompts.append[1].content: length must be at most 500",
                "max_request_body_size: value must be greater than 0",
            ]
        );
        let errs =
            parse::<DecoratorConfig>("prompts: {prepend: [{role: tool, content: x}]}").unwrap_err();
        assert_eq!(
            errs,
            ["prompts.prepend[0].role: `tool` is not one of: system, assistant, user"]
        );
        let errs = parse::<DecoratorConfig>("prompts: {prefix: []}").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("prompts.prefix: unknown field `prefix`"),
            "{errs:?}"
        );
    }

    #[test]
    fn guard() {
        let c: GuardConfig = parse("deny_patterns: [\".*password.*\"]").unwrap();
        assert!(!c.allow_all_conversation_history && !c.match_all_roles);
        assert_eq!(c.max_request_body_size, 8192);
        parse::<GuardConfig>(
            "allow_patterns: [\".*weather.*\"]\ndeny_patterns: [x]\nallow_all_conversation_history: true\nmax_request_body_size: 10\nmatch_all_roles: false\nllm_format: gemini",
        )
        .unwrap();

        let errs = parse::<GuardConfig>("allow_patterns: []").unwrap_err();
        assert_eq!(
            errs,
            [
                ": at least one of these fields must be non-empty: 'config.allow_patterns', 'config.deny_patterns'"
            ]
        );
        let many = ["a"; 11].join(", ");
        let errs = parse::<GuardConfig>(&format!(
            "allow_patterns: [{many}]\ndeny_patterns: [\"\"]\nmatch_all_roles: true\nallow_all_conversation_history: true"
        ))
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "allow_patterns: length must be at most 10",
                "deny_patterns[0]: length must be at least 1",
                "allow_all_conversation_history: value must be false (failed conditional validation given value of field 'config.match_all_roles')",
            ]
        );
        let errs = parse::<GuardConfig>("deny_pattern: [x]").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            "deny_pattern: unknown field `deny_pattern`; did you mean `deny_patterns`?"
        );
    }

    #[test]
    fn template() {
        let c: TemplateConfig = parse(
            "templates:\n- name: developer-chat\n  template: '{\"messages\": [{\"role\": \"user\", \"content\": \"Explain {{program}}\"}]}'",
        )
        .unwrap();
        assert_eq!(c.templates[0].name, "developer-chat");
        assert!(c.allow_untemplated_requests && !c.log_original_request);
        assert_eq!(c.max_request_body_size, 8192);
        parse::<TemplateConfig>(
            "templates: []\nallow_untemplated_requests: false\nlog_original_request: true\nmax_request_body_size: 1",
        )
        .unwrap();

        assert_eq!(
            parse::<TemplateConfig>("{}").unwrap_err(),
            [": missing field `templates`"]
        );
        let errs = parse::<TemplateConfig>(
            "templates: [{name: \"\", template: x}]\nmax_request_body_size: 0",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "templates[0].name: length must be at least 1",
                "max_request_body_size: value must be greater than 0",
            ]
        );
        let errs = parse::<TemplateConfig>("templates: [{name: a}]").unwrap_err();
        assert_eq!(errs, ["templates[0]: missing field `template`"]);
    }

    const LLM: &str = "llm: {route_type: llm/v1/chat, auth: {header_name: Authorization, header_value: Bearer x}, model: {provider: openai, name: gpt-4o}}";

    #[test]
    fn transformers() {
        let c: RequestTransformerConfig = parse(&format!("prompt: Make it JSON.\n{LLM}")).unwrap();
        assert_eq!(c.http_timeout, 60000);
        assert!(c.https_verify);
        assert_eq!(c.max_request_body_size, 8192);
        assert_eq!(c.llm.model.name.as_deref(), Some("gpt-4o"));
        assert!(!c.llm.logging.log_statistics);
        let c: ResponseTransformerConfig = parse(&format!(
            "prompt: Summarise.\ntransformation_extract_pattern: '\\{{((.|\\n)*)\\}}'\nparse_llm_response_json_instructions: true\nhttp_timeout: 1000\nhttps_verify: false\nmax_request_body_size: 100\nhttp_proxy_host: proxy.internal\nhttp_proxy_port: 3128\nhttps_proxy_host: 10.0.0.9\nhttps_proxy_port: 3129\n{LLM}"
        ))
        .unwrap();
        assert!(c.parse_llm_response_json_instructions);
        assert_eq!(c.https_proxy_port, Some(3129));

        let errs = parse::<RequestTransformerConfig>("prompt: x").unwrap_err();
        assert_eq!(errs, [": missing field `llm`"]);
        let errs = parse::<ResponseTransformerConfig>(
            "prompt: \"\"\nhttp_proxy_host: \"proxy:3128\"\nhttps_proxy_port: 70000\nllm: {route_type: preserve, model: {provider: anthropic}}",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "prompt: length must be at least 1",
                "http_proxy_host: must not have a port",
                "http_proxy_port: all or none of these fields must be set: 'config.http_proxy_host', 'config.http_proxy_port'",
                "https_proxy_port: value should be between 0 and 65535",
                "https_proxy_host: all or none of these fields must be set: 'config.https_proxy_host', 'config.https_proxy_port'",
                "llm.model.options.anthropic_version: must set 'model.options.anthropic_version' for anthropic provider",
                "llm.route_type: 'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins",
            ]
        );
        let errs = parse::<RequestTransformerConfig>(&format!("prompt: x\n{LLM}\nhttp_proxy: x"))
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("http_proxy: unknown field `http_proxy`"),
            "{errs:?}"
        );
    }

    /// Real users' files (`/work/shared/realworld/kong`).
    #[test]
    fn real_configs() {
        // DevstackK/Kongllmrouter
        let c: ProxyConfig = parse(
            r#"
route_type: llm/v1/chat
auth:
  param_name: key
  param_value: "${GEMINI_API_KEY}"
  param_location: query
model:
  provider: gemini
  name: gemini-2.5-flash
  options:
    max_tokens: 1024
    temperature: 0.7
"#,
        )
        .unwrap();
        assert_eq!(c.model.provider, Provider::Gemini);
        assert_eq!(c.auth.unwrap().param_location, Some(ParamLocation::Query));
    }
}
