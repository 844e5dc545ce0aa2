// The videofrom3d report viewer: the scene, the camera path with frustums, anchors and edge maps at their
// poses, the video synced to a moving frustum, and a look-through camera with the exact intrinsics.
//
// Conventions. Our cameras are OpenCV (x right, y down, +z forward; world_to_cam 4x4; K in pixels with the
// top-left pixel's centre at (0.5, 0.5)). three.js cameras and our frustum objects use OpenGL axes (x right,
// y up, looking down -z), so an object's matrix is cam_to_world_cv * F with F = diag(1, -1, -1, 1).
// Test hook: window.vf3d (ready, setFrame, frustumMatrix, currentFrame, silhouette, ...).
"use strict";
(function () {
  const D = window.VF3D_DATA;
  const W = D.width, H = D.height, N = D.frames.length;
  const state = { frame: 0, look: false, planes: "image", ready: false, videoReady: false };

  // ---------------------------------------------------------------------------------------- camera maths
  // cam_to_world_gl = inv(world_to_cam) * F, written out: rotation R^T with its y and z columns negated,
  // translation -R^T t. Returned as a THREE.Matrix4 (elements are doubles, column-major).
  function camToWorldGL(w2c) {
    const R = [[w2c[0][0], w2c[0][1], w2c[0][2]], [w2c[1][0], w2c[1][1], w2c[1][2]], [w2c[2][0], w2c[2][1], w2c[2][2]]];
    const t = [w2c[0][3], w2c[1][3], w2c[2][3]];
    const c = [0, 1, 2].map((i) => -(R[0][i] * t[0] + R[1][i] * t[1] + R[2][i] * t[2]));
    const m = new THREE.Matrix4();
    // row i of the result: (R^T)[i][0], -(R^T)[i][1], -(R^T)[i][2], c[i]
    m.set(R[0][0], -R[1][0], -R[2][0], c[0],
          R[0][1], -R[1][1], -R[2][1], c[1],
          R[0][2], -R[1][2], -R[2][2], c[2],
          0, 0, 0, 1);
    return m;
  }

  // OpenGL projection from K: pixel u in [0, W] maps to NDC x in [-1, 1] (v in [0, H] to y in [1, -1]),
  // so the principal point and skew carry over exactly.
  function projectionFromK(K, near, far) {
    const fx = K[0][0], s = K[0][1], cx = K[0][2], fy = K[1][1], cy = K[1][2];
    const m = new THREE.Matrix4();
    m.set(2 * fx / W, -2 * s / W, 1 - 2 * cx / W, 0,
          0, 2 * fy / H, 2 * cy / H - 1, 0,
          0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
          0, 0, -1, 0);
    return m;
  }

  const poses = D.frames.map((f) => camToWorldGL(f.world_to_cam));
  const centres = poses.map((m) => new THREE.Vector3().setFromMatrixPosition(m));

  // ---------------------------------------------------------------------------------------- scene graph
  const canvas = document.getElementById("gl");
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x15171a);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x404850, 1.6));
  const sun = new THREE.DirectionalLight(0xffffff, 1.4);
  sun.position.set(0.4, 1.0, 0.6);
  scene.add(sun);

  const box = new THREE.Box3().setFromPoints(centres);
  if (D.scene) box.union(new THREE.Box3(new THREE.Vector3(...D.scene.bounds[0]), new THREE.Vector3(...D.scene.bounds[1])));
  const extent = Math.max(box.getSize(new THREE.Vector3()).length(), 1e-3);
  const near = extent * 1e-3, far = extent * 20;
  // the path, not the (often much larger) scene, sets the frustum size and the first view
  const pathBox = new THREE.Box3().setFromPoints(centres);
  const pathExtent = Math.max(pathBox.getSize(new THREE.Vector3()).length(), extent * 0.1);
  const frustumDepth = pathExtent * 0.1;

  // frustum lines in OpenGL camera axes: apex at 0, image corners at depth d (pixel (u, v) -> x, -y, -d)
  function cornersGL(K, d) {
    const fx = K[0][0], s = K[0][1], cx = K[0][2], fy = K[1][1], cy = K[1][2];
    return [[0, 0], [W, 0], [W, H], [0, H]].map(([u, v]) => {
      const y = (v - cy) / fy, x = (u - cx - s * y) / fx;
      return new THREE.Vector3(x * d, -y * d, -d);
    });
  }
  function frustumLines(K, d, colour) {
    const c = cornersGL(K, d), o = new THREE.Vector3();
    const pts = [o, c[0], o, c[1], o, c[2], o, c[3], c[0], c[1], c[1], c[2], c[2], c[3], c[3], c[0]];
    // a small triangle above the top edge marks "up" in the image
    const mid = c[0].clone().add(c[1]).multiplyScalar(0.5), up = c[0].clone().sub(c[3]).multiplyScalar(0.15);
    pts.push(c[0].clone().lerp(mid, 0.6), mid.clone().add(up), mid.clone().add(up), c[1].clone().lerp(mid, 0.6));
    const g = new THREE.BufferGeometry().setFromPoints(pts);
    return new THREE.LineSegments(g, new THREE.LineBasicMaterial({ color: colour }));
  }
  function placed(obj, i) {
    obj.matrixAutoUpdate = false;
    obj.matrix.copy(poses[i]);
    obj.matrixWorldNeedsUpdate = true;
    return obj;
  }

  const helpers = new THREE.Group();
  scene.add(helpers);
  const path = new THREE.Line(new THREE.BufferGeometry().setFromPoints(centres),
                              new THREE.LineBasicMaterial({ color: 0x6fb3ff }));
  helpers.add(path);

  const anchorGroup = new THREE.Group();
  helpers.add(anchorGroup);
  const textures = [];
  const loader = new THREE.TextureLoader();
  let pending = 0;
  function texture(url) {
    if (!url) return null;
    pending++;
    const t = loader.load(url, () => { pending--; maybeReady(); }, undefined, () => { pending--; maybeReady(); });
    t.colorSpace = THREE.SRGBColorSpace;
    textures.push(t);
    return t;
  }
  const anchorFrustums = D.anchors.map((a) => {
    const g = placed(new THREE.Group(), a.frame);
    g.add(frustumLines(D.frames[a.frame].K, frustumDepth, 0xffd166));
    const c = cornersGL(D.frames[a.frame].K, frustumDepth);
    const geo = new THREE.BufferGeometry();
    geo.setAttribute("position", new THREE.Float32BufferAttribute([c[3], c[2], c[1], c[0]].flatMap((p) => p.toArray()), 3));
    geo.setAttribute("uv", new THREE.Float32BufferAttribute([0, 0, 1, 0, 1, 1, 0, 1], 2));
    geo.setIndex([0, 1, 2, 0, 2, 3]);
    const mat = new THREE.MeshBasicMaterial({ side: THREE.DoubleSide, transparent: true, opacity: 0.92 });
    const plane = new THREE.Mesh(geo, mat);
    plane.userData = { image: texture(a.image), edges: texture(a.edges) };
    g.add(plane);
    g.userData.plane = plane;
    anchorGroup.add(g);
    return g;
  });
  function applyPlanes() {
    for (const g of anchorFrustums) {
      const p = g.userData.plane, t = state.planes === "none" ? null : p.userData[state.planes];
      p.visible = !!t;
      p.material.map = t;
      p.material.needsUpdate = true;
    }
    requestRender();
  }

  const moving = placed(frustumLines(D.frames[0].K, frustumDepth * 1.3, 0xff5d5d), 0);
  helpers.add(moving);

  let mesh = null;
  function loadScene(done) {
    if (!window.VF3D_SCENE_GLB) { done(); return; }
    const bin = atob(window.VF3D_SCENE_GLB), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    new THREE.GLTFLoader().parse(bytes.buffer, "", (gltf) => {
      mesh = gltf.scene;
      mesh.traverse((o) => {
        if (o.isMesh) {
          o.material = new THREE.MeshStandardMaterial({ vertexColors: true, flatShading: true, roughness: 0.95,
                                                        metalness: 0, side: THREE.DoubleSide });
        }
      });
      scene.add(mesh);
      done();
    }, (err) => { console.warn("scene.glb could not be read:", err); done(); });
  }

  // ---------------------------------------------------------------------------------------- cameras
  const orbit = new THREE.PerspectiveCamera(50, 1, near, far);
  const lookCam = new THREE.PerspectiveCamera();
  lookCam.matrixAutoUpdate = false;
  const controls = new THREE.OrbitControls(orbit, canvas);
  {
    const centre = pathBox.getCenter(new THREE.Vector3());
    const dir = new THREE.Vector3(0.45, 1.0, 0.9).normalize();
    orbit.position.copy(centre).addScaledVector(dir, pathExtent * 1.9);
    controls.target.copy(centre);
    controls.update();
  }
  controls.addEventListener("change", () => requestRender());

  function setLookCamera(cam, i) {
    cam.matrix.copy(poses[i]);
    cam.updateMatrixWorld(true);
    cam.projectionMatrix.copy(projectionFromK(D.frames[i].K, near, far));
    cam.projectionMatrixInverse.copy(cam.projectionMatrix).invert();
  }

  // ---------------------------------------------------------------------------------------- drawing
  const stage = document.getElementById("stage");
  const video = document.getElementById("video");
  let viewRect = { x: 0, y: 0, w: 1, h: 1 };
  function layout() {
    const w = stage.clientWidth, h = stage.clientHeight;
    renderer.setSize(w, h, false);
    orbit.aspect = w / Math.max(h, 1);
    orbit.updateProjectionMatrix();
    const s = Math.min(w / W, h / H);
    viewRect = { w: Math.round(W * s), h: Math.round(H * s) };
    viewRect.x = Math.floor((w - viewRect.w) / 2);
    viewRect.y = Math.floor((h - viewRect.h) / 2);
    if (state.look) {
      Object.assign(video.style, { left: viewRect.x + "px", top: viewRect.y + "px", width: viewRect.w + "px",
                                   height: viewRect.h + "px" });
    } else {
      for (const k of ["left", "top", "width", "height"]) video.style[k] = "";
    }
    requestRender();
  }
  let scheduled = false;
  function requestRender() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; draw(); });
  }
  function draw() {
    const w = stage.clientWidth, h = stage.clientHeight;
    if (state.look) {
      setLookCamera(lookCam, state.frame);
      helpers.visible = false;
      renderer.setScissorTest(true);
      renderer.setViewport(0, 0, w, h);
      renderer.setScissor(0, 0, w, h);
      renderer.setClearColor(0x000000);
      renderer.clear();
      // three's viewport origin is the canvas's bottom-left corner
      const y = h - viewRect.y - viewRect.h;
      renderer.setViewport(viewRect.x, y, viewRect.w, viewRect.h);
      renderer.setScissor(viewRect.x, y, viewRect.w, viewRect.h);
      renderer.render(scene, lookCam);
      renderer.setScissorTest(false);
    } else {
      helpers.visible = true;
      renderer.setViewport(0, 0, w, h);
      renderer.render(scene, orbit);
    }
  }

  // ---------------------------------------------------------------------------------------- frames and video
  const slider = document.getElementById("frame");
  const label = document.getElementById("frame-label");
  slider.max = String(N - 1);
  function clampFrame(i) { return Math.min(N - 1, Math.max(0, Math.round(i))); }
  function applyFrame(i) {
    state.frame = clampFrame(i);
    moving.matrix.copy(poses[state.frame]);
    moving.matrixWorldNeedsUpdate = true;
    slider.value = String(state.frame);
    label.textContent = `frame ${state.frame} / ${N - 1}`;
    requestRender();
  }
  // the frame a media time shows: frames sit at k / fps, so round(t * fps)
  function frameAt(t) { return clampFrame(t * D.fps); }
  function setFrame(i) {
    applyFrame(i);
    // a quarter frame past the frame's time, so the decoder shows frame i and round() maps back to i
    if (state.videoReady) video.currentTime = (state.frame + 0.25) / D.fps;
  }
  if (D.video) {
    video.src = D.video;
    video.addEventListener("loadedmetadata", () => { state.videoReady = true; video.currentTime = 0.25 / D.fps; });
    video.addEventListener("error", () => { console.warn("the video could not be played here"); });
    video.addEventListener("seeked", () => applyFrame(frameAt(video.currentTime)));
    if ("requestVideoFrameCallback" in video) {
      // while playing, the presented frame's own time; when paused, "seeked" has the time asked for
      const onFrame = (_now, meta) => {
        if (!video.paused) applyFrame(frameAt(meta.mediaTime));
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    } else {
      video.addEventListener("timeupdate", () => applyFrame(frameAt(video.currentTime)));
    }
  } else {
    video.style.display = "none";
  }
  const play = document.getElementById("play");
  play.addEventListener("click", () => {
    if (!D.video) return;
    if (video.paused) { video.play(); play.textContent = "pause"; } else { video.pause(); play.textContent = "play"; }
  });
  video.addEventListener("ended", () => { play.textContent = "play"; });
  window.addEventListener("keydown", (e) => {  // arrows step a frame, space plays or pauses
    if (e.target.tagName === "INPUT" && e.target.type !== "checkbox" && e.target.type !== "radio") return;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      video.pause();
      play.textContent = "play";
      setFrame(state.frame + (e.key === "ArrowRight" ? 1 : -1));
    } else if (e.key === " ") {
      e.preventDefault();
      play.click();
    }
  });
  slider.addEventListener("input", () => { video.pause(); play.textContent = "play"; setFrame(Number(slider.value)); });

  // ---------------------------------------------------------------------------------------- controls
  const opacity = document.getElementById("opacity");
  function setLook(on) {
    state.look = !!on;
    document.getElementById("look").checked = state.look;
    controls.enabled = !state.look;
    video.classList.toggle("overlay", state.look);
    video.style.opacity = state.look ? opacity.value : "1";
    document.getElementById("hint").textContent = state.look
      ? "looking through the camera: the video over the geometry, misalignment shows as double edges"
      : "drag to orbit, wheel to zoom, arrows step frames; red: the current frame, yellow: anchors";
    layout();
  }
  document.getElementById("look").addEventListener("change", (e) => setLook(e.target.checked));
  opacity.addEventListener("input", () => { if (state.look) video.style.opacity = opacity.value; });
  document.getElementById("show-path").addEventListener("change", (e) => { path.visible = e.target.checked; requestRender(); });
  for (const r of document.querySelectorAll("input[name=planes]")) {
    r.addEventListener("change", () => { state.planes = r.value; applyPlanes(); });
  }

  // ---------------------------------------------------------------------------------------- side tables
  function fillTable(el, head, rows) {
    const tr = (cells, tag) => "<tr>" + cells.map((c) => `<${tag}>${c}</${tag}>`).join("") + "</tr>";
    el.innerHTML = tr(head, "th") + rows.map((r) => tr(r, "td")).join("");
  }
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  document.getElementById("title").textContent = D.title;
  document.title = `${D.title} - videofrom3d report`;
  fillTable(document.getElementById("timings"), ["stage", "last run s", "compute s", "ran", "reused"],
            D.timings.map((t) => [esc(t.stage), t.seconds.toFixed(1), t.compute.toFixed(1), t.ran, t.reused]));
  if (D.eval.length) {
    fillTable(document.getElementById("eval"), ["metric", "value"],
              D.eval.map(([k, v]) => [esc(k), Number.isInteger(v) ? v : v.toPrecision(4)]));
  } else {
    document.getElementById("eval-title").textContent = "eval: none (videofrom3d eval WORK --json WORK/eval.json)";
  }
  document.getElementById("info").textContent =
    `${N} frames at ${W}x${H}, ${D.fps} fps, ${D.anchors.length} anchors` +
    (D.scene ? `; scene ${D.scene.faces.toLocaleString()} of ${D.scene.source_faces.toLocaleString()} triangles` : "; no scene");

  // ---------------------------------------------------------------------------------------- test hook
  // The scene seen from frame i, unlit, white on black, at exactly W x H: what the prepare stage's object
  // mask should be. Returns the W*H mask (rows top to bottom, 0 or 255) in base64.
  function silhouette(i) {
    const cam = new THREE.PerspectiveCamera();
    cam.matrixAutoUpdate = false;
    setLookCamera(cam, clampFrame(i));
    const target = new THREE.WebGLRenderTarget(W, H);
    const white = new THREE.MeshBasicMaterial({ color: 0xffffff, side: THREE.DoubleSide });
    const keep = { bg: scene.background, helpers: helpers.visible, override: scene.overrideMaterial };
    scene.background = new THREE.Color(0x000000);
    helpers.visible = false;
    scene.overrideMaterial = white;
    renderer.setRenderTarget(target);
    renderer.render(scene, cam);
    const rgba = new Uint8Array(W * H * 4);
    renderer.readRenderTargetPixels(target, 0, 0, W, H, rgba);
    renderer.setRenderTarget(null);
    scene.background = keep.bg;
    helpers.visible = keep.helpers;
    scene.overrideMaterial = keep.override;
    target.dispose();
    white.dispose();
    let out = "";
    for (let y = H - 1; y >= 0; y--) {  // GL rows run bottom to top
      let row = "";
      for (let x = 0; x < W; x++) row += String.fromCharCode(rgba[(y * W + x) * 4] > 127 ? 255 : 0);
      out += row;
    }
    requestRender();
    return btoa(out);
  }

  window.vf3d = {
    get ready() { return state.ready; },
    get videoReady() { return state.videoReady; },
    get currentFrame() { return state.frame; },
    get frameCount() { return N; },
    get frustumCount() { return anchorGroup.children.length; },
    setFrame,
    setLook,
    // column-major 4x4 (three.js order) the viewer gives frame i's frustum and look-through camera
    frustumMatrix: (i) => poses[clampFrame(i)].toArray(),
    anchorMatrices: () => anchorFrustums.map((g) => { g.updateMatrixWorld(true); return g.matrixWorld.toArray(); }),
    projectionMatrix: (i) => projectionFromK(D.frames[clampFrame(i)].K, near, far).toArray(),
    silhouette,
  };

  let sceneLoaded = false;
  function maybeReady() {
    if (sceneLoaded && pending === 0 && !state.ready) {
      state.ready = true;
      requestRender();
    }
  }
  new ResizeObserver(layout).observe(stage);
  applyPlanes();
  setLook(false);
  applyFrame(0);
  loadScene(() => { sceneLoaded = true; maybeReady(); });
})();
