// An image viewer on a <canvas>: window/level of float pixels, zoom and pan, draggable markers.
// Coordinates: image x = column, y = row, in pixels; pixel (x, y) has its centre at x + 0.5.
"use strict";

class Viewer {
  constructor(canvas, callbacks = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.callbacks = callbacks; // onMarkerDrop(name, x, y), onEmptyClick(x, y), onSelect(name)
    this.pixels = null;
    this.rows = 0;
    this.columns = 0;
    this.center = 0;
    this.width = 1;
    this.invert = false;
    this.scale = 1;
    this.ox = 0;
    this.oy = 0;
    this.markers = []; // {name, kind, x, y, colour, label, hollow}
    this.selected = null;
    this.drag = null;
    this.image = document.createElement("canvas");
    canvas.addEventListener("mousedown", (e) => this._down(e));
    window.addEventListener("mousemove", (e) => this._move(e));
    window.addEventListener("mouseup", (e) => this._up(e));
    canvas.addEventListener("wheel", (e) => this._wheel(e), { passive: false });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
  }

  async load(url) {
    const response = await fetch(url);
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `image not available (${response.status})`);
    }
    this.rows = Number(response.headers.get("X-Rows"));
    this.columns = Number(response.headers.get("X-Columns"));
    this.center = Number(response.headers.get("X-Window-Center"));
    this.width = Math.max(Number(response.headers.get("X-Window-Width")), 1e-6);
    this.defaultWindow = [this.center, this.width];
    this.invert = response.headers.get("X-Monochrome1") === "1";
    this.pixels = new Float32Array(await response.arrayBuffer());
    this.image.width = this.columns;
    this.image.height = this.rows;
    this.renderPixels();
    this.fit();
  }

  renderPixels() {
    if (!this.pixels) return;
    const context = this.image.getContext("2d");
    const data = context.createImageData(this.columns, this.rows);
    const low = this.center - this.width / 2;
    const gain = 255 / this.width;
    for (let i = 0; i < this.pixels.length; i++) {
      let g = (this.pixels[i] - low) * gain;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      if (this.invert) g = 255 - g;
      const o = 4 * i;
      data.data[o] = data.data[o + 1] = data.data[o + 2] = g;
      data.data[o + 3] = 255;
    }
    context.putImageData(data, 0, 0);
    if (this.callbacks.onWindow) this.callbacks.onWindow(this.center, this.width);
  }

  setWindow(center, width) {
    this.center = center;
    this.width = Math.max(width, 1e-6);
    this.renderPixels();
    this.draw();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.canvas.style.width = `${box.width}px`;
    this.canvas.style.height = `${box.height}px`;
    this.canvas.width = Math.max(1, Math.round(box.width * ratio));
    this.canvas.height = Math.max(1, Math.round(box.height * ratio));
    if (!this.fitted) this.fit();
    this.draw();
  }

  fit() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    if (!this.columns || box.width < 2) return;
    this.scale = Math.min(box.width / this.columns, box.height / this.rows) * 0.96;
    this.ox = (box.width - this.columns * this.scale) / 2;
    this.oy = (box.height - this.rows * this.scale) / 2;
    this.fitted = true;
    this.draw();
  }

  zoom(factor, sx, sy) {
    const box = this.canvas.getBoundingClientRect();
    sx = sx ?? box.width / 2;
    sy = sy ?? box.height / 2;
    const scale = Math.min(Math.max(this.scale * factor, 0.1), 64);
    this.ox = sx - ((sx - this.ox) * scale) / this.scale;
    this.oy = sy - ((sy - this.oy) * scale) / this.scale;
    this.scale = scale;
    this.draw();
  }

  // Canvas (CSS pixel) position of image point (x, y), and back.
  toScreen(x, y) {
    return [(x + 0.5) * this.scale + this.ox, (y + 0.5) * this.scale + this.oy];
  }
  toImage(sx, sy) {
    return [(sx - this.ox) / this.scale - 0.5, (sy - this.oy) / this.scale - 0.5];
  }

  _local(event) {
    const box = this.canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  _hit(sx, sy) {
    let best = null;
    let bestDistance = 11;
    for (const marker of this.markers) {
      if (marker.x == null) continue;
      const [mx, my] = this.toScreen(marker.x, marker.y);
      const distance = Math.hypot(mx - sx, my - sy);
      if (distance < bestDistance) {
        best = marker;
        bestDistance = distance;
      }
    }
    return best;
  }

  _down(event) {
    const [sx, sy] = this._local(event);
    event.preventDefault();
    if (event.button === 2) {
      this.drag = { type: "window", sx, sy, center: this.center, width: this.width };
      return;
    }
    if (event.button !== 0) return;
    const marker = this._hit(sx, sy);
    if (marker) {
      this.select(marker.name);
      this.drag = { type: "marker", marker, sx, sy, moved: false };
      return;
    }
    const [x, y] = this.toImage(sx, sy);
    const inside = x >= -0.5 && y >= -0.5 && x <= this.columns - 0.5 && y <= this.rows - 0.5;
    if (inside && this.callbacks.onEmptyClick && this.callbacks.onEmptyClick(x, y)) return;
    this.drag = { type: "pan", sx, sy, ox: this.ox, oy: this.oy };
  }

  _move(event) {
    if (!this.drag) return;
    const [sx, sy] = this._local(event);
    const d = this.drag;
    if (d.type === "pan") {
      this.ox = d.ox + sx - d.sx;
      this.oy = d.oy + sy - d.sy;
    } else if (d.type === "window") {
      const step = d.width / 200;
      this.center = d.center - (sy - d.sy) * step;
      this.width = Math.max(d.width + (sx - d.sx) * step, 1e-6);
      this.renderPixels();
    } else if (d.type === "marker") {
      if (Math.hypot(sx - d.sx, sy - d.sy) > 2) d.moved = true;
      if (d.moved) {
        const [x, y] = this.toImage(sx, sy);
        d.marker.x = Math.min(Math.max(x, -0.5), this.columns - 0.5);
        d.marker.y = Math.min(Math.max(y, -0.5), this.rows - 0.5);
      }
    }
    this.draw();
  }

  _up() {
    const d = this.drag;
    this.drag = null;
    if (d && d.type === "marker" && d.moved && this.callbacks.onMarkerDrop) {
      this.callbacks.onMarkerDrop(d.marker.name, d.marker.x, d.marker.y);
    }
  }

  _wheel(event) {
    event.preventDefault();
    const [sx, sy] = this._local(event);
    this.zoom(Math.pow(1.0015, -event.deltaY), sx, sy);
  }

  select(name) {
    this.selected = name;
    if (this.callbacks.onSelect) this.callbacks.onSelect(name);
    this.draw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.pixels) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.imageSmoothingEnabled = this.scale < 1;
    ctx.drawImage(this.image, this.ox, this.oy, this.columns * this.scale, this.rows * this.scale);
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const marker of this.markers) {
      if (marker.x == null) continue;
      const [x, y] = this.toScreen(marker.x, marker.y);
      const r = marker.kind === "disc" ? 5 : 7;
      ctx.beginPath();
      if (marker.kind === "disc") {
        ctx.moveTo(x, y - r);
        ctx.lineTo(x + r, y);
        ctx.lineTo(x, y + r);
        ctx.lineTo(x - r, y);
        ctx.closePath();
      } else {
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fillStyle = marker.colour;
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5;
      if (marker.hollow) {
        ctx.strokeStyle = marker.colour;
        ctx.lineWidth = 2.5;
        ctx.stroke();
      } else {
        ctx.fill();
        ctx.stroke();
      }
      if (marker.name === this.selected) {
        ctx.beginPath();
        ctx.arc(x, y, r + 5, 0, 2 * Math.PI);
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 2;
        ctx.stroke();
      }
      const text = marker.label || marker.name;
      const tx = marker.kind === "disc" ? x - r - 6 - ctx.measureText(text).width : x + r + 6;
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.85)";
      ctx.strokeText(text, tx, y);
      ctx.fillStyle = marker.colour;
      ctx.fillText(text, tx, y);
    }
  }
}

window.Viewer = Viewer;
