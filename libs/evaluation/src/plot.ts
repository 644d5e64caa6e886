import sharp from 'sharp';
import type { ConfigResult } from './report';

/**
 * ASR against over-refusal, one point per configuration, drawn as SVG and rasterized by sharp (librsvg),
 * so the benchmark needs no plotting library.
 */
export async function asrVsOverRefusalPng(results: ConfigResult[], title: string): Promise<Buffer> {
  const W = 900;
  const H = 620;
  const m = { left: 80, right: 290, top: 50, bottom: 70 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxX = Math.max(10, ...results.map((r) => 100 * r.metrics.overRefusal.high)) * 1.1;
  const maxY = 100;
  const x = (v: number) => m.left + (v / maxX) * pw;
  const y = (v: number) => m.top + ph - (v / maxY) * ph;
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  for (let t = 0; t <= 100; t += 20)
    parts.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${y(t)}" y2="${y(t)}" stroke="#eee"/><text x="${m.left - 8}" y="${y(t) + 4}" text-anchor="end" font-size="12">${t}</text>`,
    );
  const step = maxX > 40 ? 10 : 5;
  for (let t = 0; t <= maxX; t += step) parts.push(`<text x="${x(t)}" y="${m.top + ph + 18}" text-anchor="middle" font-size="12">${t}</text>`);
  results.forEach((r, i) => {
    const c = colours[i % colours.length];
    const a = r.metrics.imageHarmfulAsr;
    const o = r.metrics.overRefusal;
    const cx = x(100 * o.value);
    const cy = y(100 * a.value);
    parts.push(
      `<line x1="${x(100 * o.low)}" x2="${x(100 * o.high)}" y1="${cy}" y2="${cy}" stroke="${c}" stroke-width="1.5"/>`,
      `<line x1="${cx}" x2="${cx}" y1="${y(100 * a.low)}" y2="${y(100 * a.high)}" stroke="${c}" stroke-width="1.5"/>`,
      `<circle cx="${cx}" cy="${cy}" r="5" fill="${c}"/>`,
      `<text x="${cx + 7}" y="${cy - 6}" font-size="11" fill="${c}">${i + 1}</text>`,
      `<circle cx="${m.left + pw + 25}" cy="${m.top + 10 + i * 20}" r="5" fill="${c}"/><text x="${m.left + pw + 35}" y="${m.top + 14 + i * 20}" font-size="12">${i + 1}. ${esc(r.name)}</text>`,
    );
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${m.left}" y="28" font-size="16">${esc(title)}</text>
<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>
${parts.join('\n')}
<text x="${m.left + pw / 2}" y="${H - 25}" text-anchor="middle" font-size="13">over-refusal on benign inputs, % (95% bootstrap interval)</text>
<text transform="translate(22 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="13">image+harmful ASR, % (content judge)</text>
</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}
