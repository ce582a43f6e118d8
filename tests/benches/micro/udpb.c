// Micro-benchmark used for the overhead notes (README "Measured overhead"); not part of the test suite.
// Build: gcc -O2 -o /tmp/udpb tests/benches/micro/udpb.c -lpthread. Run it (it pins itself to CPU 1) without the agent, then
// with `taskset -c 0 target/debug/relaywatch run --state-dir /tmp/rw --socket /tmp/rw.sock --nameserver 127.0.0.1:1`
// running, then without again; it prints the best per-operation time of its samples.
// Arguments: operations per sample, samples (the notes used: udpb 200000 10, pipeb 500000 10, execb 500 5).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
static int rfd;
static void *rd(void *a){char b[2048];for(;;){if(recv(rfd,b,sizeof b,0)<0)break;}return 0;}
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  cpu_set_t s;CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);
  int n=atoi(argv[1]); int reps=atoi(argv[2]);
  rfd=socket(AF_INET,SOCK_DGRAM,0);struct sockaddr_in a={.sin_family=AF_INET,.sin_addr.s_addr=htonl(0x7f000001)};
  bind(rfd,(void*)&a,sizeof a);socklen_t l=sizeof a;getsockname(rfd,(void*)&a,&l);
  pthread_t t;pthread_create(&t,0,rd,0);
  int fd=socket(AF_INET,SOCK_DGRAM,0);char p[64]={1};
  double best=1e18, sum=0;
  for(int r=0;r<reps;r++){double t0=now();for(int i=0;i<n;i++)sendto(fd,p,64,0,(void*)&a,sizeof a);double d=(now()-t0)/n;if(d<best)best=d;sum+=d;}
  printf("best %.1f ns  mean %.1f ns\n",best,sum/reps);
}
