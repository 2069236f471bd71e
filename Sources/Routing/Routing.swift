// Routing: plans for routes, rules, NAT and sysctls (issue 4).
