// Micro-benchmark used for the overhead notes (README "Measured overhead"); not part of the test suite.
// Build: gcc -O2 -o /tmp/execb tests/benches/micro/execb.c -lpthread. Run it (it pins itself to CPU 1) without the agent, then
// with `taskset -c 0 target/debug/relaywatch run --state-dir /tmp/rw --socket /tmp/rw.sock --nameserver 127.0.0.1:1`
// running, then without again; it prints the best per-operation time of its samples.
// Arguments: operations per sample, samples (the notes used: udpb 200000 10, pipeb 500000 10, execb 500 5).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <spawn.h>
#include <time.h>
#include <sys/wait.h>
extern char **environ;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  cpu_set_t s;CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);
  int n=atoi(argv[1]),reps=atoi(argv[2]); double best=1e18;
  char *av[]={"/bin/true","a","b",0};
  for(int r=0;r<reps;r++){double t0=now();for(int i=0;i<n;i++){pid_t p;posix_spawn(&p,"/bin/true",0,0,av,environ);waitpid(p,0,0);}double d=(now()-t0)/n;if(d<best)best=d;}
  printf("best %.1f us per spawn+exec+exit\n",best/1000);
}
