/** Result rows, small statistics and the printed table. Benchmarks measure and print; nothing asserts. */

/** One line of the table. `figure` is a number, or text such as `n/a` when nothing was measured. */
export interface Row {
  name: string;
  figure: number | string;
  unit: string;
  target: string;
  notes: string;
}

/** What one benchmark hands back: its rows and anything worth keeping in the JSON. */
export interface BenchResult {
  name: string;
  rows: Row[];
  details: unknown;
  error?: string;
  seconds: number;
}

/** Options every benchmark gets. */
export interface BenchOptions {
  quick: boolean;
  /** Work directory for this benchmark (temp). */
  dir: string;
  log: (msg: string) => void;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function minMedMax(xs: number[]): { min: number; median: number; max: number; n: number } {
  return { min: Math.min(...xs), median: median(xs), max: Math.max(...xs), n: xs.length };
}

export const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

/** A fixed-width text table; notes wrap at `notesWidth`. */
export function table(rows: Row[], notesWidth = 90): string {
  const head: Row = { name: 'benchmark', figure: 'figure', unit: 'unit', target: 'target', notes: 'notes' };
  const cells = (r: Row) => [r.name, typeof r.figure === 'number' ? fmt(r.figure, Number.isInteger(r.figure) || Math.abs(r.figure) >= 100 ? 0 : 2) : r.figure, r.unit, r.target];
  const all = [head, ...rows].map(cells);
  const w = [0, 1, 2, 3].map((i) => Math.max(...all.map((c) => String(c[i]).length)));
  const wrap = (s: string): string[] => {
    const out: string[] = [];
    let line = '';
    for (const word of s.split(' ')) {
      if (line && line.length + 1 + word.length > notesWidth) {
        out.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(line);
    return out;
  };
  const lines: string[] = [];
  const sep = w.map((x) => '-'.repeat(x)).join('-+-') + '-+-' + '-'.repeat(Math.min(notesWidth, 40));
  [head, ...rows].forEach((r, idx) => {
    const c = cells(r);
    const pad = (i: number) => (i === 1 ? String(c[i]).padStart(w[i]!) : String(c[i]).padEnd(w[i]!));
    const notes = wrap(r.notes);
    lines.push([0, 1, 2, 3].map(pad).join(' | ') + ' | ' + notes[0]);
    const indent = w.map((x) => ' '.repeat(x)).join(' | ') + ' | ';
    for (const n of notes.slice(1)) lines.push(indent + n);
    if (idx === 0) lines.push(sep);
  });
  return lines.join('\n');
}
