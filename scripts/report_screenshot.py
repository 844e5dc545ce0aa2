"""Screenshot of the report viewer for the README: `python scripts/report_screenshot.py WORK OUT.png`
(WORK with a written report, e.g. after `videofrom3d demo --out out/demo && videofrom3d report out/demo`).
Needs playwright and a system Chromium (tests/test_report.py finds it the same way)."""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

work, out = Path(sys.argv[1]), Path(sys.argv[2])
frame = int(sys.argv[3]) if len(sys.argv) > 3 else 60
exe = next(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n))
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=exe, args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto((work / "report" / "index.html").resolve().as_uri())
    page.wait_for_function("window.vf3d && vf3d.ready && vf3d.videoReady", timeout=120_000)
    page.evaluate(f"""() => new Promise(done => {{
        document.getElementById('video').addEventListener('seeked', () => setTimeout(done, 300), {{once: true}});
        vf3d.setFrame({frame});
    }})""")
    page.screenshot(path=str(out))
    browser.close()
print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
