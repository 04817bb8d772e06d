//! The browser UI: the files of `static/`, built into the binary (so that a release binary
//! shows the UI wherever it runs, whatever its working directory), or, with
//! `SWITCHBOARD_STATIC_DIR`, read from a folder at each request (for working on the UI).
//!
//! Only `GET` and `HEAD` are served; a path that does not name a file is the JSON 404 of
//! unknown routes, and a path that tries to leave the folder or names a hidden file (a
//! segment starting with `.`) is a 400 `invalid_path`, as actix-files answers for a folder.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::ApiError;

#[derive(rust_embed::RustEmbed)]
#[folder = "static/"]
struct Assets;

/// `Cache-Control` of every UI file: the names carry no version, so browsers revalidate
/// each time (a `304` when the `ETag` still matches).
pub const CACHE_CONTROL: &str = "no-cache";

/// The files built into the binary, by path under `static/` (for tests and the startup log).
pub fn embedded_files() -> impl Iterator<Item = String> {
    Assets::iter().map(|p| p.into_owned())
}

/// Serves the folder `dir` as the UI (actix-files, as for a development checkout).
pub fn from_dir(dir: &std::path::Path) -> actix_files::Files {
    actix_files::Files::new("/", dir)
        .index_file("index.html")
        // Other methods fall through to the JSON 404 of unknown routes.
        .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
        .default_handler(web::to(super::meta::not_found))
}

/// The app's default service when the UI is built in: a `GET` or `HEAD` of a UI file
/// answers it (`/` and folders: their `index.html`), anything else is the JSON 404.
pub async fn embedded(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let method = req.method();
    if method != actix_web::http::Method::GET && method != actix_web::http::Method::HEAD {
        return super::meta::not_found(req).await;
    }
    let path = actix_files::PathBufWrap::parse_path(req.path(), false).map_err(|e| {
        ApiError::BadRequest {
            code: "invalid_path",
            message: e.to_string(),
        }
    })?;
    let mut name = path
        .as_ref()
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    if name.is_empty() || req.path().ends_with('/') {
        if !name.is_empty() {
            name.push('/');
        }
        name.push_str("index.html");
    }
    let Some(file) = Assets::get(&name) else {
        return super::meta::not_found(req).await;
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut mime = file.metadata.mimetype().to_string();
    if (mime.starts_with("text/") || mime == "application/javascript") && !mime.contains("charset")
    {
        mime.push_str("; charset=utf-8");
    }
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res
        .insert_header((header::CONTENT_TYPE, mime))
        .body(file.data.into_owned()))
}
