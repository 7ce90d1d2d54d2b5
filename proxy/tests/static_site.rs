//! The root site and a `module_html` sub-site, served by the real binary: index files, redirects,
//! validators, ranges, precompressed files, methods, error pages, hostile paths and memory use.

mod support;

use std::path::Path;

use support::{http, repo_html, Proxy};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-SITE";

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

fn data() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

/// A proxy whose root site is `HOME/site` and whose module `store` serves `HOME/store_site`, with a
/// secret next to both.
fn proxy() -> Proxy {
    let proxy = Proxy::start(
        "root_path = \"site\"\nindex = \"home.htm index.html\"",
        "[module]\nmodule_html = [ { module = \"store\", path = \"store_site\" } ]",
    );
    let home = proxy.home.path();
    let site = home.join("site");
    write(&home.join("secret.txt"), SECRET.as_bytes());
    write(&site.join("index.html"), b"ROOT INDEX");
    write(&site.join("style.css"), b"body{}");
    write(&site.join("sub/index.html"), b"SUB INDEX");
    write(&site.join("both/home.htm"), b"HOME HTM");
    write(&site.join("both/index.html"), b"INDEX HTML");
    std::fs::create_dir_all(site.join("noindex")).unwrap();
    write(&site.join("data.bin"), &data());
    write(&site.join("app.js"), b"console.log('plain')");
    write(&site.join("app.js.gz"), b"GZ-BYTES");
    write(&site.join("leak.js"), b"PLAIN LEAK");
    write(&site.join("hello world.txt"), b"SPACED");
    std::os::unix::fs::symlink(home.join("secret.txt"), site.join("leak.js.gz")).unwrap();
    std::os::unix::fs::symlink(site.join("style.css"), site.join("link_inside.css")).unwrap();
    std::os::unix::fs::symlink(home.join("secret.txt"), site.join("escape_file")).unwrap();
    std::os::unix::fs::symlink(home, site.join("escape_dir")).unwrap();
    std::os::unix::fs::symlink(home, site.join("escape_index")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(site.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());

    let store = home.join("store_site");
    write(&store.join("index.html"), b"STORE INDEX");
    write(&store.join("page.html"), b"STORE PAGE");
    write(&store.join("deep/index.html"), b"DEEP INDEX");
    std::os::unix::fs::symlink(home.join("secret.txt"), store.join("escape_file")).unwrap();
    std::os::unix::fs::symlink(home, store.join("escape_dir")).unwrap();
    proxy
}

fn page(name: &str) -> Vec<u8> {
    std::fs::read(repo_html().join(name)).unwrap()
}

#[test]
fn index_files_are_tried_in_order() {
    let proxy = proxy();
    let r = proxy.get("/", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "ROOT INDEX"));
    assert_eq!(proxy.get("/sub/", &[]).text(), "SUB INDEX");
    assert_eq!(proxy.get("/both/", &[]).text(), "HOME HTM", "home.htm is listed first");
    let r = proxy.get("/noindex/", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.body, page("404.html"));
    assert_eq!(proxy.get("/store/", &[]).text(), "STORE INDEX");
    assert_eq!(proxy.get("/store/deep/", &[]).text(), "DEEP INDEX");
    assert_eq!(proxy.get("/store/page.html", &[]).text(), "STORE PAGE");
    assert_eq!(proxy.get("/hello%20world.txt", &[]).text(), "SPACED");
}

#[test]
fn directories_without_a_slash_redirect_keeping_prefix_and_query() {
    let proxy = proxy();
    for (path, location) in [
        ("/sub", "/sub/"),
        ("/sub?x=1&y=%2F", "/sub/?x=1&y=%2F"),
        ("/store", "/store/"),
        ("/store?q=1", "/store/?q=1"),
        ("//store", "/store/"),
        ("/store/deep", "/store/deep/"),
        ("//sub", "/sub/"),
    ] {
        let r = proxy.get(path, &[]);
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("location"), Some(location), "{path}");
    }
}

#[test]
fn content_headers_and_validators() {
    let proxy = proxy();
    let r = proxy.get("/style.css", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "body{}");
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.header("content-length"), Some("6"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("an ETag").to_owned();
    let modified = r.header("last-modified").expect("a Last-Modified").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(proxy.get("/index.html", &[]).header("content-type"), Some("text/html"));
    assert_eq!(
        proxy.get("/data.bin", &[]).header("content-type"),
        Some("application/octet-stream")
    );

    let r = proxy.get("/style.css", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let weak = format!("W/{etag}");
    assert_eq!(proxy.get("/style.css", &[("If-None-Match", &weak)]).status, 304);
    assert_eq!(
        proxy.get("/style.css", &[("If-None-Match", "\"other\", *")]).status,
        304
    );
    assert_eq!(proxy.get("/style.css", &[("If-None-Match", "\"other\"")]).status, 200);

    let r = proxy.get("/style.css", &[("If-Modified-Since", &modified)]);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        proxy
            .get("/style.css", &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")])
            .status,
        200
    );
    let r = proxy.get(
        "/style.css",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &modified)],
    );
    assert_eq!(r.status, 200, "If-None-Match decides when present");

    // A rewrite changes the tag.
    std::fs::write(proxy.home.path().join("site/style.css"), b"body{x}").unwrap();
    let r = proxy.get("/style.css", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.text().as_str()), (200, "body{x}"));
    assert_ne!(r.header("etag"), Some(etag.as_str()));
}

/// Small files are answered from one read, larger ones streamed: both look the same.
#[test]
fn small_and_streamed_files_carry_the_same_headers() {
    let proxy = proxy();
    let medium: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    write(&proxy.home.path().join("site/medium.bin"), &medium);
    write(&proxy.home.path().join("site/medium.txt"), &medium[..100]);
    for (path, body) in [("/medium.bin", &medium[..]), ("/medium.txt", &medium[..100])] {
        let r = proxy.get(path, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body, "{path}");
        assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert!(r.header("last-modified").is_some());
        let etag = r.header("etag").expect("an ETag").to_owned();
        assert_eq!(proxy.get(path, &[("If-None-Match", &etag)]).status, 304);
        let head = proxy.send(&http("HEAD", path, &[], b""));
        assert_eq!(head.header("etag"), Some(etag.as_str()));
        assert_eq!(head.header("content-type"), r.header("content-type"));
        assert_eq!(head.header("last-modified"), r.header("last-modified"));
        assert_eq!(head.header("content-length"), r.header("content-length"));
    }
}

/// Small files are answered from memory after the first GET; a change on disk is seen on the next
/// request, whichever way the file changed.
#[test]
fn small_files_served_from_memory_follow_the_disk() {
    let proxy = proxy();
    let site = proxy.home.path().join("site");
    let get = |path: &str| {
        let r = proxy.get(path, &[]);
        (r.status, r.text())
    };
    for _ in 0..3 {
        assert_eq!(get("/style.css"), (200, "body{}".to_string()));
    }
    write(&site.join("style.css"), b"body{color:red}");
    assert_eq!(get("/style.css"), (200, "body{color:red}".to_string()));

    // Replaced by a rename, as deploy tools do.
    write(&site.join("style.new"), b"p{}");
    std::fs::rename(site.join("style.new"), site.join("style.css")).unwrap();
    assert_eq!(get("/style.css"), (200, "p{}".to_string()));

    // A symlink that was served, retargeted outside the site: refused at once.
    assert_eq!(get("/link_inside.css"), (200, "p{}".to_string()));
    std::fs::remove_file(site.join("link_inside.css")).unwrap();
    std::os::unix::fs::symlink(proxy.home.path().join("secret.txt"), site.join("link_inside.css")).unwrap();
    let (status, body) = get("/link_inside.css");
    assert_eq!(status, 404);
    assert!(!body.contains(SECRET));

    std::fs::remove_file(site.join("style.css")).unwrap();
    assert_eq!(get("/style.css").0, 404);
}

#[test]
fn ranges() {
    let proxy = proxy();
    let all = data();
    let r = proxy.get("/data.bin", &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.body, &all[10..20]);
    let etag = r.header("etag").unwrap().to_owned();

    let r = proxy.get("/data.bin", &[("Range", "bytes=-5")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &all[995..]));
    let r = proxy.get("/data.bin", &[("Range", "bytes=990-")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &all[990..]));

    let r = proxy.get("/data.bin", &[("Range", "bytes=2000-3000")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));

    let r = proxy.get("/data.bin", &[("Range", "bytes=0-1, 5-6")]);
    assert_eq!((r.status, r.body.len()), (200, 1000), "several ranges: the whole file");

    let r = proxy.get("/data.bin", &[("Range", "bytes=0-3"), ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &all[..4]));
    let r = proxy.get("/data.bin", &[("Range", "bytes=0-3"), ("If-Range", "\"stale\"")]);
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1000),
        "a stale If-Range gets the whole file"
    );

    let r = proxy.send(&http("HEAD", "/data.bin", &[("Range", "bytes=0-9")], b""));
    assert_eq!(r.status, 206);
    assert!(r.body.is_empty());
}

#[test]
fn head_sends_headers_only() {
    let proxy = proxy();
    let r = proxy.send(&http("HEAD", "/data.bin", &[], b""));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.header("etag").is_some());
    assert!(r.body.is_empty());
}

#[test]
fn precompressed_sibling_when_gzip_is_accepted() {
    let proxy = proxy();
    let plain = proxy.get("/app.js", &[]);
    assert_eq!(plain.text(), "console.log('plain')");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

    let gz = proxy.get("/app.js", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.text(), "GZ-BYTES");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("content-type"), plain.header("content-type"));
    assert!(gz.header("content-type").unwrap().contains("javascript"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_ne!(
        gz.header("etag"),
        plain.header("etag"),
        "each representation has its own tag"
    );

    let refused = proxy.get("/app.js", &[("Accept-Encoding", "gzip;q=0")]);
    assert_eq!(refused.text(), "console.log('plain')");

    // A .gz sibling that is a symlink out of the site is never used.
    let r = proxy.get("/leak.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!((r.status, r.text().as_str()), (200, "PLAIN LEAK"));
    assert_eq!(r.header("content-encoding"), None);
}

#[test]
fn only_get_and_head() {
    let proxy = proxy();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = proxy.send(&http(method, "/index.html", &[], b"x"));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        assert_eq!(r.body, page("500.html"));
        assert_eq!(proxy.send(&http(method, "/store/page.html", &[], b"x")).status, 405);
    }
}

#[test]
fn missing_files_get_the_404_page() {
    let proxy = proxy();
    for path in ["/nope.html", "/store/nope.html", "/style.css/", "/sub/nope/", "/fifo"] {
        let r = proxy.get(path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body, page("404.html"), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    assert_eq!(
        proxy.get("/link_inside.css", &[]).text(),
        "body{}",
        "symlinks inside the site work"
    );
}

fn assert_refused(proxy: &Proxy, target: &str) {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes();
    // Raw NUL and backslash go on the wire as they are.
    raw = raw.iter().map(|&b| if b == b'~' { 0 } else { b }).collect();
    let r = proxy.send(&raw);
    let text = r.text();
    assert!(
        r.status == 404 || r.status == 400,
        "{target:?}: status {} body {text:?}",
        r.status
    );
    assert!(!text.contains(SECRET), "{target:?} leaked the secret");
    assert!(!text.contains("root:x:0"), "{target:?} leaked /etc/passwd");
    assert!(!text.contains("[server]"), "{target:?} leaked the config");
}

const HOSTILE: &[&str] = &[
    "/../secret.txt",
    "/../../../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/.%2e/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/sub/..%2F..%2Fsecret.txt",
    "/sub%2F..%2F..%2Fsecret.txt",
    "/sub/../../secret.txt",
    "/./../secret.txt",
    "/..%5Csecret.txt",
    "/..%5c..%5csecret.txt",
    "/..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/%00",
    "/index.html%00.txt",
    "/~/../secret.txt",
    "/%2Fetc%2Fpasswd",
    "//etc/passwd",
    "/%2F%2Fetc/passwd",
    "/%c0%ae%c0%ae/secret.txt",
    "/%252e%252e/secret.txt",
    "/..;/secret.txt",
    "/escape_file",
    "/escape_dir/secret.txt",
    "/escape_dir/conf/default.toml",
    "/escape_index/",
    "/escape_dir",
    "/../conf/default.toml",
    "/fifo",
];

#[test]
fn hostile_paths_never_leave_the_root_site() {
    let proxy = proxy();
    for target in HOSTILE {
        assert_refused(&proxy, target);
    }
}

#[test]
fn hostile_paths_never_leave_a_module_site() {
    let proxy = proxy();
    for target in HOSTILE {
        assert_refused(&proxy, &format!("/store{target}"));
    }
    for target in [
        "/store/../site/index.html",
        "/store/../secret.txt",
        "/store/%2e%2e/secret.txt",
        "/store/deep/../../secret.txt",
        "/store//..//..//secret.txt",
        "//store/../secret.txt",
        "/store%2F..%2Fsecret.txt",
        "/store/escape_file",
        "/store/escape_dir/secret.txt",
    ] {
        assert_refused(&proxy, target);
    }
}

/// Dot-files and dot-directories (`.git/`, `.env`, `.htpasswd`) are not served, in the root site or a
/// module site, unless `[server] dotfiles = true`; `.well-known/` always is.
#[test]
fn dot_files_are_not_served_unless_enabled() {
    let files = |proxy: &Proxy| {
        for site in ["site", "store_site"] {
            let dir = proxy.home.path().join(site);
            write(&dir.join(".env"), b"DB_PASSWORD=hunter2");
            write(&dir.join(".htpasswd"), b"admin:hash");
            write(&dir.join(".git/config"), b"[core]");
            write(&dir.join("sub/.hidden/index.html"), b"HIDDEN INDEX");
            write(&dir.join(".well-known/security.txt"), b"Contact: x");
        }
    };
    let hidden = [
        "/.env",
        "/.htpasswd",
        "/.git/config",
        "/.git/",
        "/%2Eenv",
        "/sub/.hidden/",
        "/.well-known/../.env",
    ];
    let proxy = proxy();
    files(&proxy);
    for prefix in ["", "/store"] {
        for path in hidden {
            let r = proxy.get(&format!("{prefix}{path}"), &[]);
            assert_eq!(r.status, 404, "{prefix}{path}");
            assert!(!r.text().contains("hunter2") && !r.text().contains("[core]"));
        }
        assert_eq!(
            proxy.get(&format!("{prefix}/.well-known/security.txt"), &[]).text(),
            "Contact: x"
        );
    }
    let log = proxy.log();
    assert!(log.contains("dot-file refused"), "{log}");

    let open = Proxy::start(
        "root_path = \"site\"\ndotfiles = true",
        "[module]\nmodule_html = [ { module = \"store\", path = \"store_site\" } ]",
    );
    files(&open);
    assert_eq!(open.get("/.env", &[]).text(), "DB_PASSWORD=hunter2");
    assert_eq!(open.get("/store/.git/config", &[]).text(), "[core]");
}

/// A 1 GiB (sparse) file streams through without the proxy's memory growing with it.
#[test]
fn a_large_file_streams_in_bounded_memory() {
    let proxy = proxy();
    let size: u64 = 1 << 30;
    let file = std::fs::File::create(proxy.home.path().join("site/big.bin")).unwrap();
    file.set_len(size).unwrap();
    drop(file);
    // Warm up: the first request allocates the runtime's buffers.
    assert_eq!(proxy.get("/data.bin", &[]).status, 200);
    let (rss_before, hwm_before) = proxy.memory_kib();
    let mut peak_sampled = rss_before;
    let (status, headers, received) = proxy.download(&http("GET", "/big.bin", &[], b""), |_| {
        peak_sampled = peak_sampled.max(proxy.memory_kib().0);
    });
    let (_, hwm_after) = proxy.memory_kib();
    assert_eq!(status, 200);
    let length = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    assert_eq!(length.map(|(_, v)| v.as_str()), Some("1073741824"));
    assert_eq!(received, size);
    let growth_kib = hwm_after.saturating_sub(rss_before);
    eprintln!(
        "1 GiB download: VmRSS before {rss_before} KiB, peak sampled {peak_sampled} KiB, \
         VmHWM before {hwm_before} KiB after {hwm_after} KiB, growth {growth_kib} KiB"
    );
    assert!(
        growth_kib < 8 * 1024,
        "the proxy's peak memory grew by {growth_kib} KiB serving a 1 GiB file"
    );
}
