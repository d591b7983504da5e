/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "output.h"

bool sim_results_expect_ok(const struct sim_results *r, FILE *f)
{
	bool ok = true;

	for (uint32_t i = 0; i < r->nodes; i++) {
		const struct sim_node_result *n = &r->node[i];

		if (!n->expect_set || n->expect == n->final_state)
			continue;
		ok = false;
		if (f)
			fprintf(f, "%s: expected %s, ended %s\n", n->name, scn_state_name(n->expect),
				scn_state_name(n->final_state));
	}
	return ok;
}

/* ---- trace ---- */

struct tpoint {
	float t, frac;
};

struct tline {
	struct tpoint *p;
	size_t n, cap;
};

struct sim_trace {
	size_t n;
	struct tline *line;
};

int sim_trace_new(size_t n_nodes, struct sim_trace **ret)
{
	struct sim_trace *t = calloc(1, sizeof(*t));

	if (!t || !(t->line = calloc(n_nodes ? n_nodes : 1, sizeof(*t->line)))) {
		free(t);
		return -ENOMEM;
	}
	t->n = n_nodes;
	*ret = t;
	return 0;
}

void sim_trace_free(struct sim_trace *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->line[i].p);
	free(t->line);
	free(t);
}

int sim_trace_add(struct sim_trace *t, size_t node, double t_s, double fraction)
{
	struct tline *l;

	if (node >= t->n || !(fraction >= 0 && fraction <= 1) || !(t_s >= 0))
		return -EINVAL;
	l = &t->line[node];
	if (l->n) {
		struct tpoint *last = &l->p[l->n - 1];

		if (t_s < last->t)
			return -EINVAL;
		if (fraction < 1 && fabs(fraction - last->frac) < 0.005)
			return 0;
		if (fraction == last->frac)
			return 0;
	}
	if (array_reserve((void **)&l->p, &l->cap, l->n + 1, sizeof(*l->p), 16) < 0)
		return -ENOMEM;
	l->p[l->n++] = (struct tpoint){ (float)t_s, (float)fraction };
	return 0;
}

/* ---- files ---- */

int sim_output_dir(const char *dir, struct perr *err)
{
	char buf[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(buf))
		return perr_set(err, -EINVAL, "output directory: bad path '%s'", dir);
	memcpy(buf, dir, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return perr_set(err, -errno, "%s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return perr_set(err, -errno, "%s: %s", buf, strerror(errno));
	return 0;
}

/* Opens path.tmp for writing; commit_file() renames it into place. */
static FILE *open_tmp(const char *path, char *tmp, size_t size, struct perr *err)
{
	FILE *f;

	if ((size_t)snprintf(tmp, size, "%s.tmp", path) >= size) {
		perr_set(err, -ENAMETOOLONG, "%s: path too long", path);
		return NULL;
	}
	if (!(f = fopen(tmp, "we")))
		perr_set(err, -errno, "%s: %s", tmp, strerror(errno));
	return f;
}

static int commit_file(FILE *f, const char *tmp, const char *path, struct perr *err)
{
	bool bad = ferror(f) != 0;

	if (fclose(f) != 0 || bad) {
		unlink(tmp);
		return perr_set(err, -EIO, "%s: write failed", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		return perr_set(err, -e, "%s: %s", path, strerror(e));
	}
	return 0;
}

/* A time in seconds, or null when it never happened. */
static json_t *time_or_null(double s)
{
	return s < 0 ? json_null() : json_real(round(s * 1000) / 1000);
}

int sim_results_write_json(const struct sim_results *r, const char *path, struct perr *err)
{
	json_t *root = json_object(), *nodes = json_array(), *counts = json_object();
	unsigned n_state[SCN_N_STATES] = { 0 };
	char tmp[4200];
	FILE *f;
	int k = 0;

	if (!root || !nodes || !counts) {
		json_decref(root);
		json_decref(nodes);
		json_decref(counts);
		return perr_set(err, -ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < r->nodes; i++) {
		const struct sim_node_result *n = &r->node[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:o, s:o, s:o}", "name", n->name,
				      "final_state", scn_state_name(n->final_state), "release", n->release,
				      "bytes_from_seed", (json_int_t)n->bytes_from_seed, "bytes_from_peers",
				      (json_int_t)n->bytes_from_peers, "bytes_reused", (json_int_t)n->bytes_reused,
				      "bytes_sent", (json_int_t)n->bytes_sent, "banned_peers", (int)n->banned_peers,
				      "complete_s", time_or_null(n->complete_s), "committed_s",
				      time_or_null(n->committed_s), "expected_state",
				      n->expect_set ? json_string(scn_state_name(n->expect)) : json_null());

		if (o && r->campaign_state[0] &&
		    (json_object_set_new(o, "campaign_phase", json_string(n->campaign_phase)) < 0 ||
		     json_object_set_new(o, "campaign_target", json_string(n->campaign_target)) < 0))
			k = -ENOMEM;
		if (!o || json_array_append_new(nodes, o) < 0)
			k = -ENOMEM;
		n_state[n->final_state]++;
	}
	for (unsigned s = 0; s < SCN_N_STATES; s++)
		json_object_set_new(counts, scn_state_name((enum scn_state)s), json_integer(n_state[s]));
	if (json_object_set_new(root, "scenario", json_string(r->scenario)) < 0 ||
	    json_object_set_new(root, "mode", json_string(r->mode)) < 0 ||
	    json_object_set_new(root, "seed", json_integer((json_int_t)r->seed)) < 0 ||
	    json_object_set_new(root, "nodes", json_integer(r->nodes)) < 0 ||
	    json_object_set_new(root, "image_bytes", json_integer((json_int_t)r->image_bytes)) < 0 ||
	    json_object_set_new(root, "fetch_bytes_per_node", json_integer((json_int_t)r->fetch_bytes)) < 0 ||
	    json_object_set_new(root, "seed_bytes_sent", json_integer((json_int_t)r->seed_bytes_sent)) < 0 ||
	    json_object_set_new(root, "peer_bytes_sent", json_integer((json_int_t)r->peer_bytes_sent)) < 0 ||
	    json_object_set_new(root, "local_bytes_reused", json_integer((json_int_t)r->local_bytes_reused)) < 0 ||
	    json_object_set_new(root, "time_all_complete_s", time_or_null(r->time_all_complete_s)) < 0 ||
	    json_object_set_new(root, "time_all_committed_s", time_or_null(r->time_all_committed_s)) < 0 ||
	    json_object_set_new(root, "kumar_ross_bound_s", json_real(round(r->kumar_ross_bound_s * 1000) / 1000)) < 0 ||
	    json_object_set_new(root, "bound_ratio",
				r->time_all_complete_s < 0 || r->kumar_ross_bound_s <= 0
					? json_null()
					: json_real(round(r->time_all_complete_s / r->kumar_ross_bound_s * 1000) / 1000)) < 0 ||
	    json_object_set_new(root, "end_s", json_real(round(r->end_s * 1000) / 1000)) < 0 ||
	    json_object_set_new(root, "wall_s", json_real(round(r->wall_s * 1000) / 1000)) < 0 ||
	    json_object_set_new(root, "final_states", counts) < 0 ||
	    json_object_set_new(root, "expectations_met", json_boolean(sim_results_expect_ok(r, NULL))) < 0 ||
	    json_object_set_new(root, "campaign",
				r->campaign_state[0] ? json_pack("{s:s, s:s, s:i}", "state", r->campaign_state, "reason",
								 r->campaign_reason, "failures",
								 (int)r->campaign_failures)
						     : json_null()) < 0 ||
	    json_object_set_new(root, "per_node", nodes) < 0)
		k = -ENOMEM;
	if (k < 0) {
		json_decref(root);
		return perr_set(err, k, "out of memory");
	}
	if (!(f = open_tmp(path, tmp, sizeof(tmp), err))) {
		json_decref(root);
		return -EIO;
	}
	k = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', f);
	json_decref(root);
	if (k < 0) {
		fclose(f);
		unlink(tmp);
		return perr_set(err, -EIO, "%s: write failed", tmp);
	}
	return commit_file(f, tmp, path, err);
}

/* ---- SVG ---- */

#define SVG_W 1000
#define SVG_H 600
#define PL 80  /* plot area: left, */
#define PR 220 /* right margin (legend), */
#define PT 50  /* top, */
#define PB 60  /* bottom */

static const char *const node_colours[] = {
	"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
	"#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
};
static const char *const state_colours[] = { "#2ca02c", "#ff7f0e", "#d62728" };

/* A "nice" step for about n ticks over [0, max]. */
static double tick_step(double max, int n)
{
	double raw = max / n, mag = pow(10, floor(log10(raw))), f = raw / mag;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
}

int sim_report_write_svg(const struct sim_results *r, const struct sim_trace *t, const char *path,
			 struct perr *err)
{
	double tmax = 1, pw = SVG_W - PL - PR, ph = SVG_H - PT - PB, step;
	bool per_node = r->nodes <= ELEMENTSOF(node_colours);
	char tmp[4200];
	FILE *f;

	for (size_t i = 0; i < t->n; i++)
		if (t->line[i].n && t->line[i].p[t->line[i].n - 1].t > tmax)
			tmax = t->line[i].p[t->line[i].n - 1].t;
	for (uint32_t i = 0; i < r->nodes; i++)
		if (r->node[i].committed_s > tmax)
			tmax = r->node[i].committed_s;
	if (r->kumar_ross_bound_s * 1.1 > tmax)
		tmax = r->kumar_ross_bound_s * 1.1;
	step = tick_step(tmax, 8);
	tmax = ceil(tmax / step) * step;
	if (!(f = open_tmp(path, tmp, sizeof(tmp), err)))
		return -EIO;
#define X(s) (PL + (s) / tmax * pw)
#define Y(fr) (PT + (1 - (fr)) * ph)
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		   "font-family=\"sans-serif\" font-size=\"13\">\n", SVG_W, SVG_H, SVG_W, SVG_H);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", PL);
	xml_text(f, r->scenario);
	fprintf(f, " (%s mode): %u devices, %.1f MiB image</text>\n", r->mode, r->nodes, r->image_bytes / 1048576.0);
	/* grid and ticks */
	for (double s = 0; s <= tmax + step / 2; s += step) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", X(s), PT, X(s),
			PT + ph);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", X(s), PT + ph + 18, s);
	}
	for (int p = 0; p <= 100; p += 20) {
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", PL, Y(p / 100.0),
			PL + pw, Y(p / 100.0));
		fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", PL - 6, Y(p / 100.0) + 4, p);
	}
	fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", PL, PT,
		pw, ph);
	fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">time since the release was published (s)</text>\n",
		PL + pw / 2, SVG_H - 15);
	fprintf(f, "<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\">image held by the device (%%)</text>\n",
		PT + ph / 2);
	/* one polyline per node; thin and translucent when there are many */
	for (size_t i = 0; i < t->n && i < r->nodes; i++) {
		const struct tline *l = &t->line[i];
		const char *col = per_node ? node_colours[i] : state_colours[r->node[i].final_state];

		if (!l->n)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-opacity=\"%s\" points=\"", col,
			per_node ? "2" : "1", r->nodes > 100 ? "0.35" : "0.9");
		for (size_t j = 0; j < l->n; j++)
			fprintf(f, "%.1f,%.1f ", X(l->p[j].t), Y(l->p[j].frac));
		fprintf(f, "\"><title>");
		xml_text(f, r->node[i].name);
		fprintf(f, "</title></polyline>\n");
		/* the end: a dot when committed, a cross when rolled back */
		if (r->node[i].committed_s >= 0) {
			double x = X(r->node[i].committed_s), y = Y(1);

			if (r->node[i].final_state == SCN_STATE_COMMITTED)
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, col);
			else
				fprintf(f, "<path d=\"M%.1f %.1fl8 8m0 -8l-8 8\" stroke=\"%s\" stroke-width=\"2\"/>\n", x - 4,
					y - 4, col);
		}
	}
	/* the bound */
	if (r->kumar_ross_bound_s > 0) {
		double x = X(r->kumar_ross_bound_s);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-width=\"2\" "
			   "stroke-dasharray=\"6 4\"/>\n", x, PT, x, PT + ph);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\">Kumar-Ross bound %.1f s</text>\n", x + 4, PT + 14,
			r->kumar_ross_bound_s);
	}
	if (r->time_all_complete_s >= 0) {
		double x = X(r->time_all_complete_s);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-dasharray=\"2 3\"/>\n",
			x, PT, x, PT + ph);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#555\">all complete %.1f s</text>\n", x + 4,
			PT + 30, r->time_all_complete_s);
	}
	/* legend */
	{
		double lx = PL + pw + 16;
		int ly = PT + 10;

		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-weight=\"bold\">%s</text>\n", lx, ly,
			per_node ? "devices" : "devices by final state");
		ly += 20;
		if (per_node) {
			for (uint32_t i = 0; i < r->nodes; i++, ly += 18) {
				fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
					lx, ly - 4, lx + 22, ly - 4, node_colours[i]);
				fprintf(f, "<text x=\"%.1f\" y=\"%d\">", lx + 28, ly);
				xml_text(f, r->node[i].name);
				fprintf(f, " (%s)</text>\n", scn_state_name(r->node[i].final_state));
			}
		} else {
			for (unsigned s = 0; s < SCN_N_STATES; s++, ly += 18) {
				unsigned n = 0;

				for (uint32_t i = 0; i < r->nodes; i++)
					n += r->node[i].final_state == s;
				fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
					lx, ly - 4, lx + 22, ly - 4, state_colours[s]);
				fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s: %u</text>\n", lx + 28, ly,
					scn_state_name((enum scn_state)s), n);
			}
		}
		ly += 10;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\" stroke-width=\"2\" "
			   "stroke-dasharray=\"6 4\"/>\n", lx, ly - 4, lx + 22, ly - 4);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\">Kumar-Ross bound</text>\n", lx + 28, ly);
		ly += 18;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"3\" fill=\"#444\"/>\n", lx + 11, ly - 4);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\">committed</text>\n", lx + 28, ly);
		ly += 18;
		fprintf(f, "<path d=\"M%.1f %dl8 8m0 -8l-8 8\" stroke=\"#444\" stroke-width=\"2\"/>\n", lx + 7, ly - 8);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\">rolled back</text>\n", lx + 28, ly);
		ly += 28;
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\">seed sent %.1f MiB</text>\n", lx, ly,
			r->seed_bytes_sent / 1048576.0);
		ly += 16;
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\">peers sent %.1f MiB</text>\n", lx, ly,
			r->peer_bytes_sent / 1048576.0);
		ly += 16;
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\">reused locally %.1f MiB</text>\n", lx, ly,
			r->local_bytes_reused / 1048576.0);
	}
#undef X
#undef Y
	fprintf(f, "</svg>\n");
	return commit_file(f, tmp, path, err);
}

/* ---- summary ---- */

static void fmt_time(char *out, size_t size, double s)
{
	if (s < 0)
		snprintf(out, size, "-");
	else
		snprintf(out, size, "%.1f s", s);
}

static void print_node_row(FILE *f, const struct sim_node_result *n)
{
	char c[32], m[32];

	fmt_time(c, sizeof(c), n->complete_s);
	fmt_time(m, sizeof(m), n->committed_s);
	fprintf(f, "%-16s %-12s %-8s %10s %10s %10.1f %10.1f %10.1f %10.1f %6u%s\n", n->name,
		scn_state_name(n->final_state), n->release, c, m, n->bytes_from_seed / 1048576.0,
		n->bytes_from_peers / 1048576.0, n->bytes_reused / 1048576.0, n->bytes_sent / 1048576.0, n->banned_peers,
		n->expect_set && n->expect != n->final_state ? "  <- expected " : "");
	if (n->expect_set && n->expect != n->final_state)
		fprintf(f, "%*s%s\n", 16, "", scn_state_name(n->expect));
}

static int by_complete_desc(const void *a, const void *b)
{
	const struct sim_node_result *x = *(const struct sim_node_result *const *)a;
	const struct sim_node_result *y = *(const struct sim_node_result *const *)b;
	double tx = x->complete_s < 0 ? INFINITY : x->complete_s, ty = y->complete_s < 0 ? INFINITY : y->complete_s;

	return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void sim_summary_print(FILE *f, const struct sim_results *r)
{
	unsigned n_state[SCN_N_STATES] = { 0 };
	char a[32], b[32];

	for (uint32_t i = 0; i < r->nodes; i++)
		n_state[r->node[i].final_state]++;
	fmt_time(a, sizeof(a), r->time_all_complete_s);
	fmt_time(b, sizeof(b), r->time_all_committed_s);
	fprintf(f, "\n%s (%s mode, seed %" PRIu64 "): %u devices, image %.1f MiB, %.1f MiB to fetch each\n", r->scenario,
		r->mode, r->seed, r->nodes, r->image_bytes / 1048576.0, r->fetch_bytes / 1048576.0);
	fprintf(f, "  all complete   %s   (Kumar-Ross bound %.1f s", a, r->kumar_ross_bound_s);
	if (r->time_all_complete_s >= 0 && r->kumar_ross_bound_s > 0)
		fprintf(f, ", ratio %.3f", r->time_all_complete_s / r->kumar_ross_bound_s);
	fprintf(f, ")\n  all settled    %s   (committed %u, rolled back %u, failed %u)\n", b, n_state[0], n_state[1],
		n_state[2]);
	fprintf(f, "  seed sent %.1f MiB (%.2f x the fetched part), peers sent %.1f MiB, reused locally %.1f MiB\n",
		r->seed_bytes_sent / 1048576.0, r->fetch_bytes ? (double)r->seed_bytes_sent / r->fetch_bytes : 0,
		r->peer_bytes_sent / 1048576.0, r->local_bytes_reused / 1048576.0);
	if (r->campaign_state[0])
		fprintf(f, "  campaign %s%s%s%s, %u failure(s)\n", r->campaign_state, r->campaign_reason[0] ? " (" : "",
			r->campaign_reason, r->campaign_reason[0] ? ")" : "", r->campaign_failures);
	if (r->mode && !strcmp(r->mode, "process"))
		fprintf(f, "  %.1f s from the gateway's start; %.2f s of wall time with the set-up\n\n", r->end_s, r->wall_s);
	else
		fprintf(f, "  %.1f s simulated in %.2f s of wall time\n\n", r->end_s, r->wall_s);
	fprintf(f, "%-16s %-12s %-8s %10s %10s %10s %10s %10s %10s %6s\n", "node", "state", "release", "complete",
		"settled", "seed MiB", "peers MiB", "local MiB", "sent MiB", "bans");
	if (r->nodes <= 40) {
		for (uint32_t i = 0; i < r->nodes; i++)
			print_node_row(f, &r->node[i]);
	} else {
		const struct sim_node_result **v = malloc(r->nodes * sizeof(*v));
		uint32_t shown = 0;

		if (!v)
			return;
		for (uint32_t i = 0; i < r->nodes; i++)
			v[i] = &r->node[i];
		qsort(v, r->nodes, sizeof(*v), by_complete_desc);
		for (uint32_t i = 0; i < r->nodes && shown < 10; i++, shown++)
			print_node_row(f, v[i]);
		/* and every node that did not end as expected */
		for (uint32_t i = 10; i < r->nodes; i++)
			if (v[i]->expect_set && v[i]->expect != v[i]->final_state)
				print_node_row(f, v[i]);
		fprintf(f, "(the %u that took longest; all %u are in results.json)\n", shown, r->nodes);
		free(v);
	}
}

/* ---- live view ---- */

struct sim_live {
	FILE *f;
	int lines; /* drawn last time, to move back over */
	double last_wall;
};

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int sim_live_new(FILE *f, struct sim_live **ret)
{
	struct sim_live *l;

	*ret = NULL;
	if (!isatty(fileno(f)) || (getenv("TERM") && !strcmp(getenv("TERM"), "dumb")))
		return 0;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->f = f;
	*ret = l;
	return 0;
}

static void bar(FILE *f, double frac, int width)
{
	int full = (int)(frac * width + 0.5);

	for (int i = 0; i < width; i++)
		fputs(i < full ? "#" : ".", f);
}

void sim_live_update(struct sim_live *l, const struct sim_live_state *st, bool force)
{
	struct winsize ws = { 0 };
	int rows = 24, width, shown, lines = 0;
	double now = wall_now();

	if (!l || (!force && now - l->last_wall < 0.1))
		return;
	l->last_wall = now;
	if (ioctl(fileno(l->f), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 8)
		rows = ws.ws_row;
	width = ws.ws_col > 60 ? ws.ws_col - 52 : 30;
	if (width > 60)
		width = 60;
	if (l->lines)
		fprintf(l->f, "\033[%dA", l->lines);
	fprintf(l->f, "\r\033[Kt = %7.1f s   swarm %8.1f MiB/s   seed sent %8.1f MiB   peers sent %9.1f MiB\n", st->t_s,
		st->swarm_rate_bps / 1048576.0, st->seed_bytes / 1048576.0, st->peer_bytes / 1048576.0);
	lines++;
	shown = rows - 4 < (int)st->n_nodes ? rows - 4 : (int)st->n_nodes;
	if (shown < 1)
		shown = 1;
	for (int row = 0; row < shown; row++) {
		/* more nodes than rows: each row is the mean of a block of nodes */
		size_t a = st->n_nodes * (size_t)row / (size_t)shown, b = st->n_nodes * (size_t)(row + 1) / (size_t)shown;
		double sum = 0;

		for (size_t i = a; i < b; i++)
			sum += st->nodes[i].fraction;
		if (b - a == 1)
			fprintf(l->f, "\r\033[K%-14.14s ", st->nodes[a].name);
		else
			fprintf(l->f, "\r\033[K%-6.6s..%-6.6s ", st->nodes[a].name, st->nodes[b - 1].name);
		bar(l->f, sum / (double)(b - a), width);
		fprintf(l->f, " %5.1f%% %s\n", 100 * sum / (double)(b - a), b - a == 1 ? st->nodes[a].state : "(mean)");
		lines++;
	}
	fflush(l->f);
	l->lines = lines;
}

void sim_live_free(struct sim_live *l)
{
	free(l);
}
