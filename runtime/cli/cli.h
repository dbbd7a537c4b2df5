/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cli.h - what the launcher's subcommands share (faultline.c has main()).
 */
#ifndef FL_CLI_H
#define FL_CLI_H

/* the launcher's name in messages: "faultline" */
extern const char *prog;

/* "faultline: <message>", the --help hint, exit status 2 */
__attribute__((noreturn, format(printf, 1, 2)))
void usage_error(const char *fmt, ...);

/* faultline setup (setup.c). Return: the exit status. */
int cmd_setup(int argc, char **argv);

/* faultline top (top.c), faultline plot (plot.c). Return: the exit status. */
int cmd_top(int argc, char **argv);
int cmd_plot(int argc, char **argv);

#endif /* FL_CLI_H */
