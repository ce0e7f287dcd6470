/* lb_cmd.h: `pkictl lb rotate|watch`, the load balancer's hot rotation
 * (client/lb.h). */
#ifndef PKID_CLIENT_LB_CMD_H
#define PKID_CLIENT_LB_CMD_H

/* lb_cmd_main runs `pkictl lb ...`; argv[0] is "lb". It returns the exit
 * status: 0, 1 when a rotation failed or was refused, 2 on a usage error. */
int lb_cmd_main(int argc, char **argv);

#endif /* PKID_CLIENT_LB_CMD_H */
