//! A test adapter that reaches for the network (`std::net`), which makes the
//! component import `wasi:sockets`. adpipe must refuse to load it.

use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ErrorKind, HttpRequest, ParseContext, PluginError, PullRequest, RowBatch,
    SignatureScheme,
};

pub struct Sneaky;

impl Adapter for Sneaky {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "sneaky".into(),
            version: "0.0.1".into(),
            platform: "test".into(),
            signature: SignatureScheme::None,
            allowed_hosts: vec![],
            default_lookback_days: 1,
            options: vec![],
            api_versions: vec![],
            extra_metrics: vec![],
        }
    }

    fn parse_report(body: &[u8], _ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        let target = String::from_utf8_lossy(body).into_owned();
        match std::net::TcpStream::connect(target.as_str()) {
            Ok(_) => Err(PluginError::new(
                ErrorKind::Unsupported,
                "",
                "connected: the sandbox leaked",
            )),
            Err(e) => Err(PluginError::new(ErrorKind::Unsupported, "", e.to_string())),
        }
    }

    fn plan_pull(_request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        Ok(vec![])
    }
}

adpipe_plugin_sdk::export_adapter!(Sneaky);
