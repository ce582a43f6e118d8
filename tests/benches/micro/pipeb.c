// Micro-benchmark used for the overhead notes (README "Measured overhead"); not part of the test suite.
// Build: gcc -O2 -o /tmp/pipeb tests/benches/micro/pipeb.c -lpthread. Run it (it pins itself to CPU 1) without the agent, then
// with `taskset -c 0 target/debug/relaywatch run --state-dir /tmp/rw --socket /tmp/rw.sock --nameserver 127.0.0.1:1`
// running, then without again; it prints the best per-operation time of its samples.
// Arguments: operations per sample, samples (the notes used: udpb 200000 10, pipeb 500000 10, execb 500 5).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
static int fds[2];
static void *rd(void *a){char b[65536];for(;;){if(read(fds[0],b,sizeof b)<=0)break;}return 0;}
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  cpu_set_t s;CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);
  int n=atoi(argv[1]); int reps=atoi(argv[2]);
  pipe(fds); pthread_t t;pthread_create(&t,0,rd,0);
  char p[64]={1}; double best=1e18,sum=0;
  for(int r=0;r<reps;r++){double t0=now();for(int i=0;i<n;i++)write(fds[1],p,64);double d=(now()-t0)/n;if(d<best)best=d;sum+=d;}
  printf("best %.1f ns mean %.1f\n",best,sum/reps);
}
