/*
 * bench_plot.c: the latency CDF as a hand-written SVG. One <path> per
 * series and nothing else drawn as a path (axes, grid and legend swatches
 * are <line>s), so a reader or a test can count the curves.
 */
#include <math.h>
#include <stdio.h>

#include "bench.h"

#define W 960
#define H 520
#define L 80            /* plot area: left, top, right, bottom edges */
#define T 50
#define R 680
#define B 460

static const char *const colors[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
	"#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
};
#define NCOLORS (sizeof(colors) / sizeof(colors[0]))

static void esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '"')
			fputs("&quot;", f);
		else
			fputc(*s, f);
	}
}

static double px_x(double us, double lo, double hi)
{
	double v = log10(us < 1e-3 ? 1e-3 : us);

	return L + (v - lo) / (hi - lo) * (R - L);
}

static double px_y(double frac)
{
	return B - frac * (B - T);
}

int bench_plot_svg(const char *path, const char *title, const bench_series *s, size_t n)
{
	double mn = INFINITY, mx = 0, lo, hi;
	size_t shown = 0;
	FILE *f;

	for (size_t i = 0; i < n; i++) {
		if (s[i].skipped || s[i].hist.count == 0)
			continue;
		if ((double)s[i].hist.min / 1000.0 < mn)
			mn = (double)s[i].hist.min / 1000.0;
		if ((double)s[i].hist.max / 1000.0 > mx)
			mx = (double)s[i].hist.max / 1000.0;
	}
	if (mx <= 0) {
		mn = 1;
		mx = 10;
	}
	lo = floor(log10(mn > 0.1 ? mn : 0.1));
	hi = ceil(log10(mx));
	if (hi <= lo)
		hi = lo + 1;
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H, W, H, W, H);
	fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">", (L + R) / 2);
	esc(f, title);
	fprintf(f, "</text>\n<g stroke=\"#ddd\" stroke-width=\"1\">\n");
	for (double d = lo; d <= hi; d++) {
		for (int m = 1; m < 10 && d + log10(m) <= hi; m++) {
			double x = L + (d + log10(m) - lo) / (hi - lo) * (R - L);

			fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"%s/>\n", x, T, x, B,
				m == 1 ? " stroke=\"#bbb\"" : "");
		}
	}
	for (int k = 0; k <= 10; k++)
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", L, px_y(k / 10.0), R,
			px_y(k / 10.0));
	fprintf(f, "</g>\n<g stroke=\"black\" stroke-width=\"1\">\n"
		"<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n</g>\n",
		L, B, R, B, L, T, L, B);
	for (double d = lo; d <= hi; d++) {
		double v = pow(10, d);

		fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
			px_x(v, lo, hi), B + 18, v);
	}
	for (int k = 0; k <= 10; k += 2)
		fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L - 6,
			px_y(k / 10.0) + 4, k / 10.0);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">latency (microseconds, log scale)</text>\n",
		(L + R) / 2, B + 44);
	fprintf(f, "<text x=\"22\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 22 %d)\">"
		"fraction of requests at or below the latency</text>\n", (T + B) / 2, (T + B) / 2);
	for (size_t i = 0; i < n; i++) {
		const bench_series *x = &s[i];
		const char *color = colors[shown % NCOLORS];
		uint64_t seen = 0;
		double ly = T + 10 + 20.0 * (double)shown;

		if (x->skipped || x->hist.count == 0)
			continue;
		fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s d=\"M%.1f,%.1f",
			color, shown >= NCOLORS ? " stroke-dasharray=\"5,3\"" : "",
			px_x((double)x->hist.min / 1000.0, lo, hi), px_y(0));
		for (size_t b = 0; b < BENCH_HIST_BUCKETS; b++) {
			uint64_t top;

			if (x->hist.bucket[b] == 0)
				continue;
			seen += x->hist.bucket[b];
			top = bench_hist_top(b);
			if (top > x->hist.max)
				top = x->hist.max;
			fprintf(f, " L%.1f,%.1f", px_x((double)top / 1000.0, lo, hi),
				px_y((double)seen / (double)x->hist.count));
		}
		fprintf(f, "\"><title>");
		esc(f, x->name);
		fprintf(f, "</title></path>\n");
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>\n",
			R + 20, ly, R + 44, ly, color, shown >= NCOLORS ? " stroke-dasharray=\"5,3\"" : "");
		fprintf(f, "<text x=\"%d\" y=\"%.1f\">", R + 50, ly + 4);
		esc(f, x->name);
		fprintf(f, " (%d client%s)</text>\n", x->clients, x->clients == 1 ? "" : "s");
		shown++;
	}
	fprintf(f, "</svg>\n");
	return bench_report_close(f);
}
