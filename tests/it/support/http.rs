//! HTTP helpers for tests: one client configuration, JSON in and out.

use std::time::Duration;

use serde_json::Value;

/// A client for talking to the bed: never through a proxy (a CI machine's HTTP_PROXY must not
/// capture loopback calls) and never waiting forever.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

/// POSTs `body` as JSON with extra `headers` (e.g. `("authorization", "Bearer t")`) and returns
/// the response whatever its status: the caller asserts on it.
pub async fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http_client().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url} failed: {error}"))
}

/// GETs `url`, asserts a 2xx status and returns the body parsed as JSON.
pub async fn get_json(url: &str) -> Value {
    let response = http_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {url} failed: {error}"));
    let status = response.status();
    let text = response.text().await.expect("read response body");
    assert!(status.is_success(), "GET {url}: {status}: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("GET {url}: not JSON ({error}): {text}"))
}
