//! Where a generated project gets its SDK from: a release's `sdk/` folder (the wheel, the npm tarballs,
//! the crate unpacked) or a Module Proxy checkout (the SDKs' source), and how each language's manifest
//! names it.

use std::path::{Path, PathBuf};

use super::paths;
use super::Lang;

/// The SDKs' version in a release: the proxy's own, since `make dist` packs both from one workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The npm platform package of the addon built for this machine's kind (napi-rs naming).
pub const NODE_PLATFORM_PACKAGE: &str = "modproxy-sdk-linux-x64-gnu";

/// A folder holding the SDKs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A release's `sdk/` folder, as `make dist` packs it.
    Release(PathBuf),
    /// A Module Proxy checkout with `sdk-rust/`, `sdk-python/` and `sdk-node/`.
    Checkout(PathBuf),
}

/// Whether `dir` is a release's `sdk/` folder: it holds the unpacked crate of this version.
pub fn is_release_sdk(dir: &Path) -> bool {
    dir.join(format!("modproxy-sdk-{VERSION}/Cargo.toml")).is_file()
}

/// `HOME/sdk` when this binary is a release's `HOME/bin/modproxy` and that folder holds the SDKs.
pub fn beside_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let sdk = exe.parent()?.parent()?.join("sdk");
    is_release_sdk(&sdk).then_some(sdk)
}

/// What a directory given as `--sdk-root` is: a release's `sdk/` folder, a release HOME (with `sdk/` in
/// it), or else a checkout (whose files are checked per language by [`Sdk::dependency`]).
pub fn classify(dir: &Path) -> Sdk {
    if is_release_sdk(dir) {
        Sdk::Release(dir.to_owned())
    } else if is_release_sdk(&dir.join("sdk")) {
        Sdk::Release(dir.join("sdk"))
    } else {
        Sdk::Checkout(dir.to_owned())
    }
}

/// One language's SDK, as the generated project's manifest refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency {
    /// A directory holding the crate (`Cargo.toml`): a path dependency.
    RustCrate(PathBuf),
    /// What pip installs: the wheel file, or the source directory it builds.
    PythonPackage(PathBuf),
    /// The npm package (a directory or a packed tarball) and, from a release, the platform package
    /// with the prebuilt addon.
    NodePackage {
        /// `modproxy-sdk` itself.
        main: PathBuf,
        /// `modproxy-sdk-linux-x64-gnu`, if the release has one.
        platform: Option<PathBuf>,
    },
}

impl Sdk {
    /// The folder itself.
    pub fn root(&self) -> &Path {
        match self {
            Sdk::Release(dir) | Sdk::Checkout(dir) => dir,
        }
    }

    /// The same kind of folder at its canonical path (symlinks resolved), or `None` if it does not exist.
    pub fn canonical(&self) -> Option<Sdk> {
        let root = self.root().canonicalize().ok()?;
        Some(match self {
            Sdk::Release(_) => Sdk::Release(root),
            Sdk::Checkout(_) => Sdk::Checkout(root),
        })
    }

    /// `lang`'s SDK in this folder, or the file that proves it missing (relative to the folder).
    pub fn dependency(&self, lang: Lang) -> Result<Dependency, String> {
        let need = |relative: String| {
            let path = self.root().join(&relative);
            path.exists().then_some(path).ok_or(relative)
        };
        match (self, lang) {
            (Sdk::Checkout(_), Lang::Rust) => {
                need("sdk-rust/Cargo.toml".into())?;
                Ok(Dependency::RustCrate(self.root().join("sdk-rust")))
            }
            (Sdk::Checkout(_), Lang::Python) => {
                need("sdk-python/pyproject.toml".into())?;
                Ok(Dependency::PythonPackage(self.root().join("sdk-python")))
            }
            (Sdk::Checkout(_), Lang::Node) => {
                need("sdk-node/package.json".into())?;
                Ok(Dependency::NodePackage {
                    main: self.root().join("sdk-node"),
                    platform: None,
                })
            }
            (Sdk::Release(_), Lang::Rust) => {
                let manifest = need(format!("modproxy-sdk-{VERSION}/Cargo.toml"))?;
                Ok(Dependency::RustCrate(
                    manifest.parent().unwrap_or(self.root()).to_owned(),
                ))
            }
            (Sdk::Release(dir), Lang::Python) => {
                // The wheel's tags (abi3, manylinux_2_N) are the build's; the name and version are ours.
                let prefix = format!("modproxy_sdk-{VERSION}-");
                let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".whl"))
                    })
                    .collect();
                wheels.sort();
                wheels
                    .pop()
                    .map(Dependency::PythonPackage)
                    .ok_or_else(|| format!("{prefix}*.whl"))
            }
            (Sdk::Release(_), Lang::Node) => Ok(Dependency::NodePackage {
                main: need(format!("modproxy-sdk-{VERSION}.tgz"))?,
                platform: need(format!("{NODE_PLATFORM_PACKAGE}-{VERSION}.tgz")).ok(),
            }),
        }
    }
}

impl Dependency {
    /// The manifest text for this dependency of a project in `project` (absolute, canonical): Cargo's
    /// path (relative), a PEP 508 `file://` URL (which cannot be relative), or package.json's
    /// dependency entries (relative `file:` specs). `None` for a path that cannot go in a manifest.
    pub fn manifest_text(&self, project: &Path) -> Option<String> {
        let relative = |to: &Path| paths::manifest_safe(&paths::relative(project, to)).map(str::to_owned);
        match self {
            Dependency::RustCrate(dir) => relative(dir),
            Dependency::PythonPackage(path) => paths::file_url(path),
            Dependency::NodePackage { main, platform } => {
                let mut text = format!(
                    "\"dependencies\": {{\n    \"modproxy-sdk\": \"file:{}\"\n  }}",
                    relative(main)?
                );
                // Optional, as napi-rs makes it: npm skips it on a machine of another kind.
                if let Some(platform) = platform {
                    text.push_str(&format!(
                        ",\n  \"optionalDependencies\": {{\n    \"{NODE_PLATFORM_PACKAGE}\": \"file:{}\"\n  }}",
                        relative(platform)?
                    ));
                }
                Some(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    /// A release `sdk/` folder with every artifact.
    fn release() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = tmp.path().canonicalize().unwrap().join("rel/sdk");
        touch(&sdk.join(format!("modproxy-sdk-{VERSION}/Cargo.toml")));
        touch(&sdk.join(format!("modproxy_sdk-{VERSION}-cp39-abi3-manylinux_2_34_x86_64.whl")));
        touch(&sdk.join(format!("modproxy-sdk-{VERSION}.tgz")));
        touch(&sdk.join(format!("{NODE_PLATFORM_PACKAGE}-{VERSION}.tgz")));
        (tmp, sdk)
    }

    #[test]
    fn a_release_is_found_by_its_sdk_folder_or_its_home() {
        let (_tmp, sdk) = release();
        assert_eq!(classify(&sdk), Sdk::Release(sdk.clone()));
        assert_eq!(classify(sdk.parent().unwrap()), Sdk::Release(sdk.clone()));
        let elsewhere = sdk.parent().unwrap().parent().unwrap();
        assert_eq!(classify(elsewhere), Sdk::Checkout(elsewhere.to_owned()));
    }

    #[test]
    fn a_release_gives_each_language_its_artifact_by_a_path_from_the_project() {
        let (_tmp, sdk) = release();
        let project = sdk.parent().unwrap().parent().unwrap().join("work/hello");
        let release = Sdk::Release(sdk.clone());

        let rust = release.dependency(Lang::Rust).unwrap();
        assert_eq!(
            rust.manifest_text(&project).unwrap(),
            format!("../../rel/sdk/modproxy-sdk-{VERSION}")
        );
        let python = release.dependency(Lang::Python).unwrap();
        assert_eq!(
            python.manifest_text(&project).unwrap(),
            format!(
                "file://{}/modproxy_sdk-{VERSION}-cp39-abi3-manylinux_2_34_x86_64.whl",
                sdk.display()
            )
        );
        let node = release.dependency(Lang::Node).unwrap().manifest_text(&project).unwrap();
        let json: serde_json::Value = serde_json::from_str(&format!("{{{node}}}")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "dependencies": {"modproxy-sdk": format!("file:../../rel/sdk/modproxy-sdk-{VERSION}.tgz")},
                "optionalDependencies": {
                    NODE_PLATFORM_PACKAGE: format!("file:../../rel/sdk/{NODE_PLATFORM_PACKAGE}-{VERSION}.tgz")
                },
            })
        );
    }

    #[test]
    fn a_missing_artifact_is_named() {
        let (_tmp, sdk) = release();
        std::fs::remove_file(sdk.join(format!("modproxy-sdk-{VERSION}.tgz"))).unwrap();
        assert_eq!(
            Sdk::Release(sdk.clone()).dependency(Lang::Node),
            Err(format!("modproxy-sdk-{VERSION}.tgz"))
        );
        for entry in std::fs::read_dir(&sdk).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "whl") {
                std::fs::remove_file(path).unwrap();
            }
        }
        assert_eq!(
            Sdk::Release(sdk.clone()).dependency(Lang::Python),
            Err(format!("modproxy_sdk-{VERSION}-*.whl"))
        );
        let checkout = Sdk::Checkout(sdk);
        assert_eq!(checkout.dependency(Lang::Rust), Err("sdk-rust/Cargo.toml".into()));
    }

    #[test]
    fn a_checkout_gives_the_source_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        touch(&root.join("sdk-node/package.json"));
        let node = Sdk::Checkout(root.clone()).dependency(Lang::Node).unwrap();
        assert_eq!(
            node.manifest_text(&root.join("backends/hello")).unwrap(),
            "\"dependencies\": {\n    \"modproxy-sdk\": \"file:../../sdk-node\"\n  }"
        );
    }
}
