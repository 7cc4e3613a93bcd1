//! The console's files, built into the binary: plain HTML, CSS and JavaScript modules,
//! with no build step (no Node toolchain), served as they are in `assets/`.

/// One file of the console.
#[derive(Debug)]
pub(super) struct Asset {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    pub(super) body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! assets {
    ($($path:literal => $content_type:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("assets/", $path)),
        }),*]
    };
}

/// Every file, by its path under `/console/`.
const ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "console.css" => CSS,
    "js/app.js" => JS,
    "js/bus.js" => JS,
    "js/dom.js" => JS,
    "js/feed.js" => JS,
    "js/views/overview.js" => JS,
    "js/views/channels.js" => JS,
    "js/views/casil.js" => JS,
    "js/views/operators.js" => JS,
};

/// The file at `path` under `/console/`.
pub(super) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module a page or a module imports is served, so the console never loads
    /// half-way.
    #[test]
    fn every_imported_module_is_served() {
        let mut checked = 0;
        for asset in ASSETS {
            let dir = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            for line in asset.body.lines() {
                let Some(rest) = line.split_once("from '").map(|(_, rest)| rest) else {
                    continue;
                };
                let Some(target) = rest.split_once('\'').map(|(target, _)| target) else {
                    continue;
                };
                let resolved = resolve(dir, target);
                assert!(find(&resolved).is_some(), "{} imports {target}", asset.path);
                checked += 1;
            }
        }
        assert!(checked > 5, "only {checked} imports found");
        let page = find("index.html").unwrap().body;
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            // Modules only: no inline script or handler the policy would block.
            assert!(!asset.body.contains("eval("), "{}", asset.path);
        }
        assert!(!page.contains("<script>"), "inline script in index.html");
        assert!(!page.contains("style=\""), "inline style in index.html");
        assert!(!page.contains(" onclick="), "inline handler in index.html");
    }

    /// `target` (`./x.js`, `../x.js`) relative to `dir`.
    fn resolve(dir: &str, target: &str) -> String {
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for part in target.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        parts.join("/")
    }
}
