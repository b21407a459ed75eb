"""Artifacts from Maven Central, resolved with the installed ``mvn`` into a local cache.

Resolution goes through the user's Maven repository (``~/.m2``), and the copied result is
kept under the run directory with a marker file, so a second start needs no network.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from civsync.services.process import LauncherError, run_checked

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>civsync.local</groupId>
  <artifactId>{name}</artifactId>
  <version>1</version>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""

_DEPENDENCY = """    <dependency>
      <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
      {extra}
    </dependency>"""


_EXCLUSION = "<exclusion><groupId>{group}</groupId><artifactId>{artifact}</artifactId></exclusion>"


@dataclass(frozen=True)
class Artifact:
    """A Maven coordinate; ``classifier`` and ``type`` select an archive (``all``, ``tar.gz``).
    ``transitive=False`` takes the artifact alone; ``exclude`` leaves out some of its
    dependencies (``group:artifact``, with what they bring)."""

    group: str
    artifact: str
    version: str
    classifier: str | None = None
    type: str = "jar"
    transitive: bool = True
    exclude: tuple[str, ...] = ()

    def as_dependency(self) -> str:
        extra = f"<type>{self.type}</type>" if self.type != "jar" else ""
        if self.classifier:
            extra += f"<classifier>{self.classifier}</classifier>"
        excluded = ("*:*",) if not self.transitive else self.exclude
        if excluded:
            extra += "<exclusions>"
            for coordinate in excluded:
                group, artifact = coordinate.split(":")
                extra += _EXCLUSION.format(group=group, artifact=artifact)
            extra += "</exclusions>"
        return _DEPENDENCY.format(
            group=self.group, artifact=self.artifact, version=self.version, extra=extra
        )


def resolve(name: str, artifacts: list[Artifact], target: Path) -> Path:
    """Copy ``artifacts`` and their runtime dependencies into ``target``; cached by a marker."""
    target = target.resolve()  # mvn -f reads a relative path from the pom's directory
    wanted = "\n".join(a.as_dependency() for a in artifacts)
    marker = target / ".resolved"
    if marker.is_file() and marker.read_text() == wanted:
        return target
    if shutil.which("mvn") is None:
        raise LauncherError(
            "Maven (mvn) is not installed; run `make setup` or apt-get install maven"
        )
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pom = target / "pom.xml"
    pom.write_text(_POM.format(name=name, dependencies=wanted))
    run_checked(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target / 'lib'}",
            "-DincludeScope=runtime",
        ],
        what=f"resolving {name} from Maven Central",
    )
    marker.write_text(wanted)
    return target
