//! `bot-detection` (PRIORITY 2500, access): refuses (403) requests whose `User-Agent` is a
//! known bot's (Kong's built-in list of crawler patterns) or matches one of the `deny`
//! regexes, unless it matches one of the `allow` regexes
//! (`kong/plugins/bot-detection/handler.lua`). A regex only PCRE can run (lookaround,
//! backreferences) cannot be enforced here: its routes are closed rather than opened.

use std::sync::{Arc, OnceLock};

use http::{StatusCode, header};
use regex::RegexSet;
use serde::Deserialize;

use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;

/// The plugin's `config` (Kong's `kong/plugins/bot-detection/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `User-Agent` regexes let through.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `User-Agent` regexes refused.
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            for (i, re) in list.iter().enumerate() {
                let field = format!("{field}[{i}]");
                if re.is_empty() {
                    c.error(&field, "length must be at least 1");
                } else {
                    pcre_regex(c, &field, re);
                }
            }
        }
    }
}

/// Kong's `is_regex` compiles with PCRE: what PCRE has and Rust's `regex` does not
/// (look-around, backreferences) is accepted, the rest must compile.
fn pcre_regex(c: &mut Checks, field: &str, re: &str) {
    match regex::Regex::new(re) {
        Err(e) if !e.to_string().contains("not supported") => c.regex(field, re),
        _ => {}
    }
}

/// `bot-detection` (PRIORITY 2500).
pub struct BotDetection;

impl PluginSpec for BotDetection {
    const NAME: &'static str = "bot-detection";
    const PRIORITY: i32 = 2500;
    const KIND: Kind = Kind::Acts;
    const NO_CONSUMER: bool = true;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let (Ok(allow), Ok(deny)) = (RegexSet::new(&config.allow), RegexSet::new(&config.deny))
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Handler { allow, deny })))
    }
}

/// Kong's built-in bot patterns (`kong/plugins/bot-detection/rules.lua`, from ua-parser).
const BOTS: [&str; 14] = [
    r#"(Pingdom\.com_bot_version_)(\d+)\.(\d+)"#,
    r#"(facebookexternalhit)/(\d+)\.(\d+)"#,
    r#"Google.*/\+/web/snippet"#,
    r#"(Twitterbot)/(\d+)\.(\d+)"#,
    r#"\b(Boto3?|JetS3t|aws-(?:cli|sdk-(?:cpp|go|java|nodejs|ruby2?|dotnet-(?:\d{1,2}|core)))|s3fs)/(\d+)\.(\d+)(?:\.(\d+)|)"#,
    r#" PTST/\d+(?:\.)?\d+$"#,
    r#"/((?:Ant-)?Nutch|[A-z]+[Bb]ot|[A-z]+[Ss]pider|Axtaris|fetchurl|Isara|ShopSalad|Tailsweep)[ \-](\d+)(?:\.(\d+)(?:\.(\d+))?)?"#,
    r#"\b(008|Altresium|Argus|BaiduMobaider|BoardReader|DNSGroup|DataparkSearch|EDI|Goodzer|Grub|INGRID|Infohelfer|LinkedInBot|LOOQ|Nutch|OgScrper|PathDefender|Peew|PostPost|Steeler|Twitterbot|VSE|WebCrunch|WebZIP|Y!J-BR[A-Z]|YahooSeeker|envolk|sproose|wminer)/(\d+)(?:\.(\d+)|)(?:\.(\d+)|)"#,
    r#"(MSIE) (\d+)\.(\d+)([a-z]\d|[a-z]|);.* MSIECrawler"#,
    r#"(Google-HTTP-Java-Client|Apache-HttpClient|Go-http-client|scalaj-http|http%20client|Python-urllib|HttpMonitor|TLSProber|WinHTTP|JNLP|okhttp|aihttp|reqwest|axios|unirest-(?:java|python|ruby|nodejs|php|net))(?:[ /](\d+)(?:\.(\d+)|)(?:\.(\d+)|)|)"#,
    r#"(CSimpleSpider|Cityreview Robot|CrawlDaddy|CrawlFire|Finderbots|Index crawler|Job Roboter|KiwiStatus Spider|Lijit Crawler|QuerySeekerSpider|ScollSpider|Trends Crawler|USyd-NLP-Spider|SiteCat Webbot|BotName\/\$BotVersion|123metaspider-Bot|1470\.net crawler|50\.nu|8bo Crawler Bot|Aboundex|Accoona-[A-z]{1,30}-Agent|AdsBot-Google(?:-[a-z]{1,30}|)|altavista|AppEngine-Google|archive.{0,30}\.org_bot|archiver|Ask Jeeves|[Bb]ai[Dd]u[Ss]pider(?:-[A-Za-z]{1,30})(?:-[A-Za-z]{1,30}|)|bingbot|BingPreview|blitzbot|BlogBridge|Bloglovin|BoardReader Blog Indexer|BoardReader Favicon Fetcher|boitho.com-dc|BotSeer|BUbiNG|\b\w{0,30}favicon\w{0,30}\b|\bYeti(?:-[a-z]{1,30}|)|Catchpoint(?: bot|)|[Cc]harlotte|Checklinks|clumboot|Comodo HTTP\(S\) Crawler|Comodo-Webinspector-Crawler|ConveraCrawler|CRAWL-E|CrawlConvera|Daumoa(?:-feedfetcher|)|Feed Seeker Bot|Feedbin|findlinks|Flamingo_SearchEngine|FollowSite Bot|furlbot|Genieo|gigabot|GomezAgent|gonzo1|(?:[a-zA-Z]{1,30}-|)Googlebot(?:-[a-zA-Z]{1,30}|)|Google SketchUp|grub-client|gsa-crawler|heritrix|HiddenMarket|holmes|HooWWWer|htdig|ia_archiver|ICC-Crawler|Icarus6j|ichiro(?:/mobile|)|IconSurf|IlTrovatore(?:-Setaccio|)|InfuzApp|Innovazion Crawler|InternetArchive|IP2[a-z]{1,30}Bot|jbot\b|KaloogaBot|Kraken|Kurzor|larbin|LEIA|LesnikBot|Linguee Bot|LinkAider|LinkedInBot|Lite Bot|Llaut|lycos|Mail\.RU_Bot|masscan|masidani_bot|Mediapartners-Google|Microsoft .{0,30} Bot|mogimogi|mozDex|MJ12bot|msnbot(?:-media {0,2}|)|msrbot|Mtps Feed Aggregation System|netresearch|Netvibes|NewsGator[^/]{0,30}|^NING|Nutch[^/]{0,30}|Nymesis|ObjectsSearch|OgScrper|Orbiter|OOZBOT|PagePeeker|PagesInventory|PaxleFramework|Peeplo Screenshot Bot|PlantyNet_WebRobot|Pompos|Qwantify|Read%20Later|Reaper|RedCarpet|Retreiver|Riddler|Rival IQ|scooter|Scrapy|Scrubby|searchsight|seekbot|semanticdiscovery|SemrushBot|Simpy|SimplePie|SEOstats|SimpleRSS|SiteCon|Slackbot-LinkExpanding|Slack-ImgProxy|Slurp|snappy|Speedy Spider|Squrl Java|Stringer|TheUsefulbot|ThumbShotsBot|Thumbshots\.ru|Tiny Tiny RSS|Twitterbot|WhatsApp|URL2PNG|Vagabondo|VoilaBot|^vortex|Votay bot|^voyager|WASALive.Bot|Web-sniffer|WebThumb|WeSEE:[A-z]{1,30}|WhatWeb|WIRE|WordPress|Wotbox|www\.almaden\.ibm\.com|Xenu(?:.s|) Link Sleuth|Xerka [A-z]{1,30}Bot|yacy(?:bot|)|YahooSeeker|Yahoo! Slurp|Yandex\w{1,30}|YodaoBot(?:-[A-z]{1,30}|)|YottaaMonitor|Yowedo|^Zao|^Zao-Crawler|ZeBot_www\.ze\.bz|ZooShot|ZyBorg)(?:[ /]v?(\d+)(?:\.(\d+)(?:\.(\d+)|)|)|)"#,
    r#"(?:\/[A-Za-z0-9\.]+|) {0,5}([A-Za-z0-9 \-_\!\[\]:]{0,50}(?:[Aa]rchiver|[Ii]ndexer|[Ss]craper|[Bb]ot|[Ss]pider|[Cc]rawl[a-z]{0,50}))[/ ](\d+)(?:\.(\d+)(?:\.(\d+)|)|)"#,
    r#"(?:\/[A-Za-z0-9\.]+|) {0,5}([A-Za-z0-9 \-_\!\[\]:]{0,50}(?:[Aa]rchiver|[Ii]ndexer|[Ss]craper|[Bb]ot|[Ss]pider|[Cc]rawl[a-z]{0,50})) (\d+)(?:\.(\d+)(?:\.(\d+)|)|)"#,
    r#"((?:[A-z0-9]{1,50}|[A-z\-]{1,50} ?|)(?: the |)(?:[Ss][Pp][Ii][Dd][Ee][Rr]|[Ss]crape|[Cc][Rr][Aa][Ww][Ll])[A-z0-9]{0,50})(?:(?:[ /]| v)(\d+)(?:\.(\d+)|)(?:\.(\d+)|)|)"#,
];

/// The built-in list, compiled once per process.
fn bots() -> &'static RegexSet {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| RegexSet::new(BOTS).expect("Kong's bot patterns compile"))
}

struct Handler {
    allow: RegexSet,
    deny: RegexSet,
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        BotDetection::NAME
    }
    fn priority(&self) -> i32 {
        BotDetection::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, _: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let mut agents = req.headers().get_all(header::USER_AGENT).iter();
        let Some(agent) = agents.next() else {
            return Flow::Continue;
        };
        if agents.next().is_some() {
            return Flow::Respond(respond::message(
                StatusCode::BAD_REQUEST,
                "Only one User-Agent header allowed",
            ));
        }
        let agent = String::from_utf8_lossy(agent.as_bytes());
        let agent = agent.trim();
        if self.allow.is_match(agent) {
            return Flow::Continue;
        }
        if self.deny.is_match(agent) || bots().is_match(agent) {
            return Flow::Respond(respond::message(StatusCode::FORBIDDEN, "Forbidden"));
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kongs_bot_list_compiles_and_catches_crawlers() {
        for ua in [
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "curl/7.1 bingbot/2.0",
            "python-requests Scrapy/2.0",
            "Go-http-client/1.1",
        ] {
            assert!(bots().is_match(ua), "{ua}");
        }
        assert!(!bots().is_match("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"));
    }
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("{}").unwrap();
        assert!(c.allow.is_empty() && c.deny.is_empty());
    }

    #[test]
    fn every_field() {
        let c: Config =
            parse("allow: ['(Googlebot)']\ndeny: ['(libwww-perl)', '(?<!good)bot']").unwrap();
        assert_eq!(c.allow, ["(Googlebot)"]);
        assert_eq!(c.deny.len(), 2);
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>("deny: ['(unclosed', '']").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("deny[0]: not a valid regex: "),
            "{errs:?}"
        );
        assert_eq!(errs[1], "deny[1]: length must be at least 1");
        assert_eq!(
            parse::<Config>("blacklist: [curl]").unwrap_err(),
            ["blacklist: unknown field `blacklist`"]
        );
        assert_eq!(
            parse::<Config>("deny: curl").unwrap_err(),
            ["deny: expected a list, found a scalar"]
        );
    }

    #[test]
    fn real_configs() {
        parse::<Config>("deny: ['(libwww-perl)', '(Python-urllib)']").unwrap();
    }
}
