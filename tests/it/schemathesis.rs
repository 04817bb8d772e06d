//! Schemathesis (PyPI; pinned in tests/py/requirements.txt, installed by scripts/test.sh)
//! against the running server's `/api/openapi.json`: generated and mutated requests to every
//! documented operation (examples, coverage, fuzzing and stateful phases), failing on any
//! 5xx and on any response that does not match the description (status code, content type,
//! body schema). `/ws` and the signed webhooks (`/livekit/webhook`, `/twilio/*`) are left
//! out: their bodies are accepted only with a valid signature, tested in their own modules.

use std::time::Duration;

use crate::support::app::{spawn_app_with, TestOptions};

const KEY: &str = "schemathesis-management-key";

#[actix_web::test]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let app = spawn_app_with(TestOptions {
        api_key: Some(KEY.into()),
        ..Default::default()
    })
    .await;
    let schema = format!("{}/api/openapi.json", app.address);
    let run = tokio::process::Command::new("schemathesis")
        .args(["run", &schema])
        .args(["--header", &format!("x-api-key: {KEY}")])
        .args(["--exclude-path", "/ws", "--exclude-path", "/livekit/webhook"])
        .args(["--exclude-path-regex", "^/twilio/"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Reproducible in CI; raise --max-examples locally for a deeper search.
        .args(["--max-examples", "25", "--seed", "20261123", "--workers", "1"])
        .args(["--no-color"])
        // Its cache directory (.schemathesis/) goes to the test's data directory.
        .current_dir(app.data_dir.path())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(600), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "could not run schemathesis ({e}): install it with \
             `python3 -m pip install -r tests/py/requirements.txt` (scripts/test.sh does)"
        ),
        Err(_) => panic!("schemathesis did not finish within 10 minutes"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(
        stdout.contains("generated"),
        "schemathesis ran no test case:\n{stdout}\n{stderr}"
    );
}
