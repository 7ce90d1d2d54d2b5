//! Method contracts through the real binary: `GET /<module>/_describe` against fixture backends.

mod support;

use support::config::{config, socket_module};
use support::contract_backend::{fixture_document, ContractBackend};
use support::Proxy;

#[test]
fn describe_returns_the_backends_document_and_caches_it() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    for _ in 0..3 {
        let response = proxy.get("/todo/_describe", &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(response.json(), fixture_document());
    }
    assert_eq!(backend.count("_describe"), 1, "asked once, then served from the cache");
}

#[test]
fn a_redeployed_backend_is_asked_again_once_the_proxy_reconnects() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    assert_eq!(proxy.get("/todo/_describe", &[]).json(), fixture_document());
    let mut changed = fixture_document();
    let new_method = serde_json::json!({ "name": "archive", "doc": null, "data": true, "result": true });
    changed["methods"].as_array_mut().unwrap().push(new_method);
    backend.redeploy(changed.clone());
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The next call finds its kept connection closed and reconnects; the contract is asked for again.
    let call = proxy.post("/todo/", &[], br#"{"head":{"method":"any"},"data":1}"#);
    assert_eq!(call.status, 200, "{}", call.text());
    let response = proxy.get("/todo/_describe", &[]);
    assert_eq!(response.json(), changed, "the new contract, well within the 30 s cache");
    assert_eq!(backend.count("_describe"), 2);
}

#[test]
fn client_js_is_the_generated_javascript_client() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    let response = proxy.get("/todo/_client.js", &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/javascript; charset=utf-8"));
    let written = generate(&format!("http://{}", proxy.addr), "js").unwrap();
    assert_eq!(
        response.text(),
        written,
        "the same code `modproxy client --lang js` writes"
    );
    let without = ContractBackend::start(None);
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[without.addr], "")]));
    let response = proxy.get("/todo/_client.js", &[]);
    assert_eq!(response.status, 404, "{}", response.text());
    assert_eq!(response.json()["error"]["code"], "method_not_found");
}

#[test]
fn describe_of_a_backend_without_contracts_is_404_method_not_found() {
    let backend = ContractBackend::start(None);
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    let response = proxy.get("/todo/_describe", &[]);
    assert_eq!(response.status, 404, "{}", response.text());
    let error = &response.json()["error"];
    assert_eq!(error["code"], "method_not_found", "{error}");
    assert!(error["message"].as_str().unwrap().contains("'todo'"), "{error}");
}

#[test]
fn other_gets_of_a_socket_module_are_still_refused() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    assert_eq!(proxy.get("/todo/_other", &[]).status, 405);
    assert_eq!(backend.seen().len(), 0);
}

#[test]
fn validate_refuses_data_that_does_not_fit_before_any_backend_sees_it() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("todo", &[backend.addr], "validate = true")]),
    );
    let bad = proxy.post("/todo", &[], br#"{"head":{"method":"add"},"data":{"a":"one","b":2}}"#);
    assert_eq!(bad.status, 400, "{}", bad.text());
    let error = &bad.json()["error"];
    assert_eq!(error["field"], "/a", "{error}");
    assert!(error["expected"].as_str().unwrap().contains("integer"), "{error}");
    assert!(
        proxy.log().contains("refused by validate"),
        "a log line: {}",
        proxy.log()
    );
    assert_eq!(
        backend.count("add"),
        0,
        "the backend never saw it: {:?}",
        backend.seen()
    );

    let good = proxy.post("/todo", &[], br#"{"head":{"method":"add"},"data":{"a":1,"b":2}}"#);
    assert_eq!(good.status, 200, "{}", good.text());
    // A method the document does not list passes through: the backend answers it.
    let unknown = proxy.post("/todo", &[], br#"{"head":{"method":"nope"},"data":"x"}"#);
    assert_eq!(unknown.status, 200, "{}", unknown.text());
    assert_eq!((backend.count("add"), backend.count("nope")), (1, 1));
    assert_eq!(backend.count("_describe"), 1, "one document, its validators kept");
}

#[test]
fn without_validate_the_backend_sees_every_request() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    let bad = proxy.post("/todo", &[], br#"{"head":{"method":"add"},"data":{"a":"one"}}"#);
    assert_eq!(bad.status, 200, "{}", bad.text());
    assert_eq!((backend.count("add"), backend.count("_describe")), (1, 0));
}

/// Runs `modproxy client` and returns the generated source, or the failure's stderr.
fn generate(from: &str, lang: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("client");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .args(["client", "--module", "todo", "--lang", lang, "--from", from, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(std::fs::read_to_string(out).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn client_is_generated_from_a_proxy_or_straight_from_a_backend() {
    let backend = ContractBackend::start(Some(fixture_document()));
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    let through_proxy = generate(&format!("http://{}", proxy.addr), "ts").unwrap();
    let from_backend = generate(&backend.addr.to_string(), "ts").unwrap();
    assert_eq!(through_proxy, from_backend, "one document, one client");
    assert!(
        through_proxy.contains("export async function add(data: AddData)"),
        "{through_proxy}"
    );
    let js = generate(&format!("http://{}/todo/_describe", proxy.addr), "js").unwrap();
    assert!(js.contains("@typedef"), "{js}");
}

#[test]
fn client_from_a_backend_without_contracts_fails_and_says_why() {
    let backend = ContractBackend::start(None);
    let proxy = Proxy::start("", &config(&[socket_module("todo", &[backend.addr], "")]));
    let error = generate(&format!("http://{}", proxy.addr), "ts").unwrap_err();
    assert!(error.contains("404") && error.contains("method_not_found"), "{error}");
    let error = generate(&backend.addr.to_string(), "ts").unwrap_err();
    assert!(error.contains("method_not_found"), "{error}");
}
